"""Model files saved by Keras 3 (TensorFlow's `tf.keras` since 2.16), rebuilt as Keras 2 models.

Everything here that profiles, compresses or converts a model works on tf-keras (Keras 2)
models, because TF Model Optimization does; tf-keras cannot read what Keras 3 writes. A Keras 3
`.keras` or `.h5` file is loaded with Keras 3, its graph is replayed from its config with tf-keras
layers made from translated layer configs (the same layers, names and connections), and every
layer's weights are copied across with their shapes checked. What has no Keras 2 equivalent
(a custom or Lambda layer, a `keras.ops` call in a functional graph, an activation tf-keras
does not have) is refused with one line naming the layer. Element-wise `keras.ops` calls in the
graph (Keras 3's MobileNetV3 has them) are replayed as TensorFlow ops.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.errors import ModelFileError
from measure.loading import _one_line

# Keyword arguments every tf-keras layer accepts through its base class.
_BASE_KWARGS = frozenset({"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                          "batch_size", "weights", "activity_regularizer", "autocast", "implementation"})
# Keras 3 activation names tf-keras knows under another name.
_ACTIVATION_NAMES = {"silu": "swish"}
# Keras 3 activations tf-keras lacks (or defines otherwise: its hard_sigmoid is 0.2x + 0.5,
# Keras 3's relu6(x + 3) / 6), written in TensorFlow ops the TFLite converter fuses
# (RELU6, HARD_SWISH, LEAKY_RELU) and registered with tf-keras under package "keras3", so
# that TF-MOT's clones of the model deserialize them.
_ACTIVATION_PACKAGE = "keras3"
_ACTIVATION_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "relu6": lambda tf, x: tf.nn.relu6(x),
    "leaky_relu": lambda tf, x: tf.nn.leaky_relu(x, alpha=0.2),
    "hard_sigmoid": lambda tf, x: tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
    "hard_silu": lambda tf, x: x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0),
}
_ACTIVATION_OPS["hard_swish"] = _ACTIVATION_OPS["hard_silu"]  # Keras 3's older name for it
# Keras 3 layer options with no Keras 2 counterpart that do not change what the layer computes
# at inference (a kernel choice, a dropout seed; masked steps' outputs, which tf-keras's
# Bidirectional sets on the layers it wraps itself).
_IGNORED_KEYS = frozenset({"use_cudnn", "seed", "flash_attention", "zero_output_for_mask"})
# Keys a tf-keras layer's from_config requires that Keras 3 keeps elsewhere (None: built on call).
_REQUIRED_KEYS: dict[str, dict[str, Any]] = {
    "MultiHeadAttention": {"query_shape": None, "key_shape": None, "value_shape": None},
}
# `keras.ops` calls a Keras 3 functional graph may hold (Keras 3's own MobileNetV3 adds and
# multiplies with ops): replayed as the TensorFlow op, which tf-keras wraps in a TFOpLambda layer.
_OPS: dict[str, str] = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Divide": "truediv",
                        "TrueDivide": "truediv", "Maximum": "maximum", "Minimum": "minimum"}
# Serialized objects (initializers, regularizers, ...) that only matter for training from scratch.
_DROPPED_MODULES = ("keras.initializers",)
_MODEL_CLASSES = frozenset({"Functional", "Model", "Sequential"})
# Config keys holding a whole layer's config (Bidirectional, TimeDistributed): translated as a layer.
_WRAPPED_KEYS = ("layer", "backward_layer")


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _read(path: Path, archive_member: str, h5_attribute: str) -> str:
    """A .keras archive's member, or an .h5 file's root attribute, as text ("" if absent)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return archive.read(archive_member).decode() if archive_member in archive.namelist() else ""
    import h5py

    with h5py.File(path, "r") as handle:
        return _text(handle.attrs.get(h5_attribute, ""))


def saved_by_keras3(path: Path) -> bool:
    """Whether a .keras archive or .h5 file records that Keras 3 (or later) wrote it."""
    try:
        if zipfile.is_zipfile(path):
            version = str(json.loads(_read(path, "metadata.json", "") or "{}").get("keras_version", ""))
        else:
            version = _read(path, "", "keras_version")
    except Exception:  # unreadable here: the Keras 2 loader reports it in its own words
        return False
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) >= 3


def load_as_keras2(path: Path, custom_objects: dict[str, Any] | None = None) -> Any:
    """The Keras 3 model in `path`, rebuilt as a tf-keras model with the same weights.

    Raises:
        ModelFileError: the file does not load with Keras 3, or a layer has no Keras 2 equivalent.
    """
    import keras as keras3

    from measure._tf import keras

    # The graph first, from the file's own config: a layer Keras 2 cannot have is named before
    # Keras 3 is asked to load anything (it would refuse a Lambda in words about trust).
    try:
        saved = json.loads(_read(path, "config.json", "model_config"))
        class_name, config = saved["class_name"], saved["config"]
    except Exception as exc:
        raise ModelFileError(f"cannot read the model config of Keras 3 file {path}: {_one_line(exc)}") from exc
    _register_activations(keras())
    try:
        rebuilt = _rebuild(keras(), config, class_name, custom_objects or {})
    except _Untranslatable as exc:
        raise ModelFileError(f"Keras 3 model {path} cannot be rebuilt for Keras 2 (TF-MOT needs it): {exc}") from exc
    try:
        source = keras3.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ModelFileError(f"cannot load Keras 3 model {path}: {_one_line(exc)}") from exc
    _copy_weights(source, rebuilt, path)
    return rebuilt


class _Untranslatable(Exception):
    """A part of a Keras 3 model with no Keras 2 equivalent (the message names it)."""


# ---------------------------------------------------------------------------------------------
# Configs


def _plain(value: Any) -> Any:
    """A Keras 3 config value in tf-keras's terms: dtype policies become their names,
    serialized objects lose Keras 3's module and registered-name keys."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "class_name" in value and "config" in value:
        if value["class_name"] in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"]["name"]
        if value.get("registered_name") not in (None, value["class_name"]) or not str(
                value.get("module", "keras")).startswith("keras"):
            raise _Untranslatable(f"custom object {value.get('registered_name') or value['class_name']}")
        return {"class_name": value["class_name"], "config": _plain(value["config"])}
    return {k: _plain(v) for k, v in value.items()}


def _accepted(cls: type) -> set[str] | None:
    """The keyword arguments a tf-keras layer class takes (None: it takes any)."""
    names: set[str] = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return names


def _layer_config(cls: type, class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The tf-keras config of one Keras 3 layer."""
    out = dict(_REQUIRED_KEYS.get(class_name, {}))
    for key, value in config.items():
        if key in _IGNORED_KEYS:
            continue
        if isinstance(value, dict) and str(value.get("module", "")).startswith(_DROPPED_MODULES):
            continue
        out[key] = _plain(value)
    activation = out.get("activation")
    if isinstance(activation, str):
        activation = _ACTIVATION_NAMES.get(activation, activation)
        if activation in _ACTIVATION_OPS:
            activation = f"{_ACTIVATION_PACKAGE}>{activation}"
        out["activation"] = activation
    accepted = _accepted(cls)
    unknown = sorted(k for k in out if accepted is not None and k not in accepted
                     and k not in _REQUIRED_KEYS.get(class_name, {}))
    for key in unknown:
        if out[key] not in (None, False, [], {}):
            raise _Untranslatable(f"layer {config.get('name')} ({class_name}) sets {key}={out[key]!r}, "
                                  "which Keras 2 does not have")
        del out[key]
    return out


def _register_activations(keras: Any) -> None:
    """Make `_ACTIVATION_OPS` known to tf-keras (once per process)."""
    from measure._tf import tf

    known = keras.utils.get_custom_objects()
    for name, op in _ACTIVATION_OPS.items():
        key = f"{_ACTIVATION_PACKAGE}>{name}"
        if key not in known:
            def activation(x: Any, _op: Callable[[Any, Any], Any] = op) -> Any:
                return _op(tf(), x)

            activation.__name__ = activation.__qualname__ = name
            keras.saving.register_keras_serializable(package=_ACTIVATION_PACKAGE, name=name)(activation)


# ---------------------------------------------------------------------------------------------
# The graph


def _rebuild(keras: Any, config: dict[str, Any], class_name: str, custom_objects: dict[str, Any]) -> Any:
    """A tf-keras model with the graph, layer settings and names of a Keras 3 model config."""
    if class_name == "Sequential":
        return _sequential(keras, config, custom_objects)
    tensors: dict[tuple[str, int, int], Any] = {}
    calls: dict[str, int] = {}
    for spec in config["layers"]:
        name = spec.get("name") or spec["config"]["name"]
        if spec["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _input(keras, spec["config"])
            continue
        layer = _op(spec) or _make_layer(keras, spec, custom_objects)
        for node in spec.get("inbound_nodes", []):
            args = _resolve(node.get("args", []), tensors)
            kwargs = _resolve(node.get("kwargs", {}), tensors)
            out = layer(*args, **kwargs)
            index = calls.get(name, 0)
            calls[name] = index + 1
            flat = out if isinstance(out, (list, tuple)) else [out]
            for i, tensor in enumerate(flat):
                tensors[(name, index, i)] = tensor
    inputs = _endpoints(config["input_layers"], tensors)
    outputs = _endpoints(config["output_layers"], tensors)
    return keras.Model(inputs, outputs, name=config.get("name"))


def _sequential(keras: Any, config: dict[str, Any], custom_objects: dict[str, Any]) -> Any:
    model = keras.Sequential(name=config.get("name"))
    for spec in config["layers"]:
        if spec["class_name"] == "InputLayer":
            shape = spec["config"].get("batch_shape") or spec["config"].get("batch_input_shape")
            model.add(keras.Input(batch_shape=shape, dtype=spec["config"].get("dtype"),
                                  name=spec["config"].get("name")))
            continue
        model.add(_make_layer(keras, spec, custom_objects))
    return model


def _input(keras: Any, config: dict[str, Any]) -> Any:
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if config.get("sparse") or config.get("ragged"):
        raise _Untranslatable(f"input {config.get('name')} is sparse or ragged")
    return keras.Input(batch_shape=shape, dtype=_plain(config.get("dtype")), name=config.get("name"))


def _make_layer(keras: Any, spec: dict[str, Any], custom_objects: dict[str, Any]) -> Any:
    class_name = spec["class_name"]
    name = spec.get("name") or spec["config"].get("name")
    if class_name in _MODEL_CLASSES:
        return _rebuild(keras, spec["config"], class_name, custom_objects)
    # .keras archives name the module ("keras.layers"); legacy .h5 configs leave it out.
    module = str(spec.get("module") or "keras.layers")
    registered = spec.get("registered_name")
    cls = custom_objects.get(class_name) or getattr(keras.layers, class_name, None)
    if class_name == "Lambda":
        raise _Untranslatable(f"layer {name} is a Lambda (its Python code does not carry over)")
    built_in = module.startswith("keras.layers") and registered in (None, class_name)
    if cls is None or not (built_in or class_name in custom_objects):
        what = (f"a keras.ops call ({module})" if ".ops." in module
                else f"class {registered or class_name} ({module})")
        raise _Untranslatable(f"layer {name} is {what}, which Keras 2 has no layer for")
    config = _layer_config(cls, class_name, _wrapped(keras, spec["config"], custom_objects))
    try:
        return cls.from_config(config)
    except Exception as exc:
        raise _Untranslatable(f"layer {name} ({class_name}): {_one_line(exc)}") from exc


def _wrapped(keras: Any, config: dict[str, Any], custom_objects: dict[str, Any]) -> dict[str, Any]:
    """A wrapper layer's config with the layers it wraps rebuilt for tf-keras and serialized back."""
    out = dict(config)
    for key in _WRAPPED_KEYS:
        inner = out.get(key)
        if isinstance(inner, dict) and "class_name" in inner and "config" in inner:
            layer = _make_layer(keras, inner, custom_objects)
            out[key] = {"class_name": inner["class_name"], "config": layer.get_config()}
    return out


def _op(spec: dict[str, Any]) -> Callable[..., Any] | None:
    """The TensorFlow function replaying a `keras.ops` node, None for a layer."""
    if ".ops." not in str(spec.get("module") or "") or spec["class_name"] not in _OPS:
        return None
    from measure._tf import tf

    return getattr(tf().math, _OPS[spec["class_name"]])


def _resolve(value: Any, tensors: dict[tuple[str, int, int], Any]) -> Any:
    """Node arguments with each serialized Keras 3 tensor replaced by the rebuilt tensor."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = tuple(value["config"]["keras_history"])
            if history not in tensors:
                raise _Untranslatable(f"tensor {history} is used before it is made")
            return tensors[history]
        return {k: _resolve(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(v, tensors) for v in value]
    return value


def _endpoints(spec: Any, tensors: dict[tuple[str, int, int], Any]) -> Any:
    """A model's inputs or outputs: one [name, node, index] triple, or a list (or dict) of them."""
    if isinstance(spec, dict):
        return {k: _endpoints(v, tensors) for k, v in spec.items()}
    if len(spec) == 3 and isinstance(spec[0], str):
        return tensors[(spec[0], int(spec[1]), int(spec[2]))]
    return [_endpoints(s, tensors) for s in spec]


# ---------------------------------------------------------------------------------------------
# Weights


def _leaf_layers(model: Any, is_model: Callable[[Any], bool]) -> dict[str, Any]:
    """Layers with weights by their path of names (a nested model's layers under its name)."""
    found: dict[str, Any] = {}
    stack = [("", layer) for layer in model.layers]
    while stack:
        prefix, layer = stack.pop(0)
        if is_model(layer):
            stack[:0] = [(f"{prefix}{layer.name}/", inner) for inner in layer.layers]
        elif layer.weights:
            found[prefix + layer.name] = layer
    return found


def _copy_weights(source: Any, target: Any, path: Path) -> None:
    import keras as keras3

    from measure._tf import keras

    src = _leaf_layers(source, lambda layer: isinstance(layer, keras3.Model))
    dst = _leaf_layers(target, lambda layer: isinstance(layer, keras().Model))
    missing = sorted(set(src) ^ set(dst))
    if missing:
        raise ModelFileError(f"Keras 3 model {path}: layers {', '.join(missing[:5])} do not match after rebuilding")
    for name, layer in src.items():
        values = layer.get_weights()
        shapes = [tuple(w.shape) for w in dst[name].weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ModelFileError(f"Keras 3 model {path}: layer {name}'s weights {[v.shape for v in values]} "
                                 f"do not fit its Keras 2 rebuild {shapes}")
        dst[name].set_weights(values)
