"""Models by name or path: a zoo network, a user's Keras file or SavedModel, or a .tflite file.

Every failure a user can cause comes out as one line naming the path and what is wrong
(`ModelFileError`), an unknown name (`UnknownNameError`, with close zoo names), or an
impossible option (`OptionError`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import ModelFileError, OptionError, UnknownNameError
from measure import zoo

SHA_PREFIX = 12

NAME_RESOLVERS: dict[str, str] = {"sampled:": "measure.sampling:resolve_sampled"}
"""Name prefixes resolved elsewhere ("module:function", imported on use), with the zoo's options."""


@dataclass(frozen=True, eq=False)
class ResolvedModel:
    """A model ready to profile, compress or measure, and what is known about it.

    Compared by identity: it may hold a live Keras model.
    """

    key: str  # canonical model id: zoo name (with a non-default configuration) or file:<name>@<sha>
    kind: str  # "zoo" | "file" | "tflite" (| "sampled", from measure.sampling)
    keras_model: Any | None
    tflite_path: str | None
    family: str  # zoo family, or "user"
    domain: str  # "image" | "text" | "other"
    input_size: int | None
    width: float | None
    num_classes: int | None
    weights: str  # "imagenet-cached" | "random" | "file"
    notes: tuple[str, ...] = ()
    sha256: str | None = None
    has_recurrent: bool = False
    path: str | None = None


def zoo_key(name: str, input_size: int, width: float, num_classes: int) -> str:
    """The canonical id of a zoo configuration: the bare name when everything is default.

    Non-default settings are appended (`mobilenet_v2@96-w0.35-c10`) so that two
    configurations never share the key that measurements are cached under.
    """
    entry = zoo.get_entry(name)
    parts = []
    if input_size != entry.default_input_size:
        parts.append(f"@{input_size}")
    if width != 1.0:
        parts.append(f"-w{width:g}")
    if num_classes != entry.default_num_classes:
        parts.append(f"-c{num_classes}")
    return name + "".join(parts)


def resolve_model(
    model: str,
    *,
    input_size: int | None = None,
    width: float | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> ResolvedModel:
    """Resolve a zoo name or a model path.

    Args:
        model: a zoo name (see `measure.zoo.ZOO`), a sampled architecture (`sampled:<block>:<seed>`,
            see `measure.sampling`), or the path of a `.keras` or `.h5` file, a Keras SavedModel
            directory, or a `.tflite` file (measurement only).
        input_size, width, num_classes, seed: zoo options (see `measure.zoo.build`). A file
            model has a fixed shape and classifier, so giving any of them for a file is an error.

    Returns:
        The resolved model.

    Raises:
        UnknownNameError: neither a zoo name nor something that looks like a path.
        ModelFileError: a missing, unreadable, corrupt or unsupported model file.
        OptionError: a bad zoo option, or a zoo option given for a file model.
    """
    if model in zoo.ZOO:
        return _from_zoo(model, input_size, width, num_classes, seed)
    for prefix, target in NAME_RESOLVERS.items():
        if model.startswith(prefix):
            module, function = target.split(":")
            resolver = getattr(importlib.import_module(module), function)
            return resolver(model, input_size=input_size, width=width, num_classes=num_classes, seed=seed)
    path = Path(model).expanduser()
    if not path.exists():
        if _looks_like_path(model):
            raise ModelFileError(f"model file {model} does not exist")
        raise UnknownNameError("model", model, zoo.ZOO)
    given = {k: v for k, v in (("input_size", input_size), ("width", width),
                                ("num_classes", num_classes)) if v is not None}
    if given:
        raise OptionError(
            f"{', '.join(given)} cannot be set for the model file {model}: "
            "a file model has a fixed shape and classifier (these options are for zoo networks)"
        )
    loader = _loader_for(path)
    return loader(path)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix.lower() in LOADERS


def _from_zoo(name: str, input_size: int | None, width: float | None, num_classes: int | None,
              seed: int) -> ResolvedModel:
    built = zoo.build(name, input_size=input_size, width=width, num_classes=num_classes, seed=seed)
    return ResolvedModel(
        key=zoo_key(name, built.input_size, built.width, built.num_classes),
        kind="zoo",
        keras_model=built.model,
        tflite_path=None,
        family=built.family,
        domain=built.domain,
        input_size=built.input_size,
        width=built.width,
        num_classes=built.num_classes,
        weights=built.weights,
        notes=built.notes,
        has_recurrent=has_recurrent(built.model),
    )


# ---------------------------------------------------------------------------------------------
# Hashing


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files' bytes in sorted path order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    try:
        for f in files:
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def file_key(path: Path, sha256: str) -> str:
    """The canonical id of a model file: `file:<basename>@<first 12 hex of its SHA-256>`."""
    return f"file:{path.name}@{sha256[:SHA_PREFIX]}"


# ---------------------------------------------------------------------------------------------
# Loaders, one per kind of file


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_keras(path: Path) -> Any:
    """keras.models.load_model as one clear error; an unknown layer is retried with TF-MOT's
    wrappers known, so that a pruned or quantization-aware model saved mid-pipeline loads. A file
    Keras 3 wrote (TensorFlow's own `tf.keras` since 2.16) is rebuilt as a Keras 2 model
    (`measure.keras3`)."""
    from measure import keras3
    from measure._tf import keras, tfmot

    if path.is_file() and keras3.saved_by_keras3(path):
        return keras3.load_as_keras2(path, zoo.custom_objects())
    k = keras()
    try:
        return k.models.load_model(str(path), compile=False, custom_objects=zoo.custom_objects())
    except Exception as first:  # the library raises OSError, ValueError, zipfile errors, ...
        if "Unknown" not in str(first):
            raise ModelFileError(f"cannot load Keras model {path}: {_one_line(first)}") from first
        try:
            mot = tfmot()
            with mot.quantization.keras.quantize_scope(), mot.sparsity.keras.prune_scope():
                return k.models.load_model(str(path), compile=False, custom_objects=zoo.custom_objects())
        except Exception as again:
            raise ModelFileError(f"cannot load Keras model {path}: {_one_line(first)}") from again


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
SIGNATURES = {".keras": (ZIP_SIGNATURE, "a .keras zip archive"), ".h5": (HDF5_SIGNATURE, "an HDF5 file"),
              ".hdf5": (HDF5_SIGNATURE, "an HDF5 file")}


def _check_signature(path: Path) -> None:
    """Refuse a file whose first bytes are not those of its kind, before Keras guesses."""
    signature, what = SIGNATURES[path.suffix.lower()]
    try:
        with path.open("rb") as fh:
            head = fh.read(len(signature))
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if not head:
        raise ModelFileError(f"model file {path} is empty")
    if head != signature:
        raise ModelFileError(f"model file {path} is not {what} (corrupt or mislabelled)")


def _keras_file(path: Path) -> ResolvedModel:
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file")
    _check_signature(path)
    return _resolved_keras(path, _load_keras(path))


def _saved_model(path: Path) -> ResolvedModel:
    if not (path / "saved_model.pb").is_file():
        raise ModelFileError(
            f"directory {path} is not a SavedModel (no saved_model.pb); give a .keras, .h5 or "
            ".tflite file or a Keras SavedModel directory"
        )
    export_hint = "export it from Keras with model.save(path) (Keras 2) or give a .keras/.h5 file"
    if not (path / "keras_metadata.pb").is_file():
        raise ModelFileError(f"SavedModel {path} was not saved by Keras: {export_hint}")
    model = _load_keras(path)
    from measure._tf import keras

    if not isinstance(model, keras().Model):
        raise ModelFileError(f"SavedModel {path} does not load as a Keras model: {export_hint}")
    return _resolved_keras(path, model)


def _tflite_file(path: Path) -> ResolvedModel:
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
    except Exception as exc:  # the interpreter raises ValueError/RuntimeError on a bad flatbuffer
        raise ModelFileError(f"cannot load TFLite model {path}: {_one_line(exc)}") from exc
    shape = tuple(int(d) for d in inp["shape"])
    sha = file_sha256(path)
    domain = _guess_domain(shape, inp["dtype"].__name__)
    return ResolvedModel(
        key=file_key(path, sha),
        kind="tflite",
        keras_model=None,
        tflite_path=str(path),
        family="user",
        domain=domain,
        input_size=shape[1] if len(shape) > 1 else None,
        width=None,
        num_classes=int(out["shape"][-1]) if len(out["shape"]) else None,
        weights="file",
        notes=("a .tflite file can be measured but not compressed or profiled by layer",),
        sha256=sha,
        path=str(path),
    )


LOADERS: dict[str, Callable[[Path], ResolvedModel]] = {
    ".keras": _keras_file,
    ".h5": _keras_file,
    ".hdf5": _keras_file,
    ".tflite": _tflite_file,
}
"""Loader per file extension; a directory is a SavedModel."""


def _loader_for(path: Path) -> Callable[[Path], ResolvedModel]:
    if path.is_dir():
        return _saved_model
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ModelFileError(
            f"model file {path} has an unsupported kind '{path.suffix or '(no extension)'}': "
            f"give one of {', '.join(sorted(LOADERS))} or a Keras SavedModel directory"
        )
    return loader


# ---------------------------------------------------------------------------------------------
# What a loaded Keras model looks like


def _guess_domain(shape: tuple[Any, ...], dtype: str) -> str:
    """int input of rank 2 (batch, tokens) is text; rank 4 non-integer-token input is an image."""
    if len(shape) == 2 and dtype.startswith("int"):
        return "text"
    if len(shape) == 4 and dtype.startswith(("float", "bfloat", "int8", "uint8")):
        return "image"
    return "other"


def iter_layers(model: Any) -> list[Any]:
    """Every layer of a model, looking into nested models and wrappers."""
    from measure._tf import keras

    k = keras()
    found: list[Any] = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        found.append(layer)
        if isinstance(layer, k.Model):
            stack[:0] = list(layer.layers)
        elif isinstance(layer, k.layers.Wrapper):
            stack.insert(0, layer.layer)
    return found


def has_recurrent(model: Any) -> bool:
    """Whether any layer is recurrent (LSTM, GRU, SimpleRNN or another keras RNN)."""
    from measure._tf import keras

    rnn = keras().layers.RNN
    return any(isinstance(layer, rnn) for layer in iter_layers(model))


def _with_batch_of_one(model: Any, path: Path) -> Any:
    """The same model (layers, names, weights) on inputs with a fixed batch of 1."""
    from measure._tf import keras

    k = keras()
    inputs = [k.Input(batch_shape=(1, *t.shape[1:]), dtype=t.dtype, name=t.name.split(":")[0])
              for t in model.inputs]
    try:
        clone = k.models.clone_model(model, input_tensors=inputs if len(inputs) > 1 else inputs[0])
        clone.set_weights(model.get_weights())
    except Exception as exc:  # clone_model raises ValueError/TypeError on layers it cannot rebuild
        raise ModelFileError(f"Keras model {path} has recurrent layers and a dynamic batch, and rebuilding it "
                             f"with a batch of 1 failed: {_one_line(exc)}") from exc
    return clone


def _resolved_keras(path: Path, model: Any) -> ResolvedModel:
    inputs = getattr(model, "inputs", None) or []
    if not inputs:
        raise ModelFileError(
            f"Keras model {path} has no defined input (a subclassed model?): save a functional "
            "or Sequential model built on keras.Input"
        )
    recurrent = has_recurrent(model)
    notes = []
    if recurrent and inputs[0].shape[0] is None:
        model = _with_batch_of_one(model, path)
        inputs = model.inputs
        notes.append("recurrent layers with a dynamic batch: rebuilt with a fixed batch of 1 (the TFLite "
                     "converter needs a static batch for them), as the zoo's recurrent networks are")
    shape = tuple(inputs[0].shape.as_list())
    dtype = inputs[0].dtype.name
    if any(d is None for d in shape[1:]):
        notes.append(f"input shape {shape[1:]} has unknown dimensions")
    out_shape = model.outputs[0].shape.as_list() if model.outputs else []
    sha = file_sha256(path)
    return ResolvedModel(
        key=file_key(path, sha),
        kind="file",
        keras_model=model,
        tflite_path=None,
        family="user",
        domain=_guess_domain(shape, dtype),
        input_size=shape[1] if len(shape) > 1 and shape[1] is not None else None,
        width=None,
        num_classes=int(out_shape[-1]) if out_shape and out_shape[-1] else None,
        weights="file",
        notes=tuple(notes),
        sha256=sha,
        has_recurrent=recurrent,
        path=str(path),
    )
