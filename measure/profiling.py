"""The model profile: per-layer type, multiply-accumulates, parameters and shapes of a Keras model.

MACs follow the usual conventions (one multiply-add = one MAC, biases and element-wise work
ignored). Layers without a formula here (normalisation, activations, pooling, merges, reshapes)
count 0 MACs but stay in the profile: their output sizes matter for memory-bound work.

Wrappers are looked through: a TF-MOT `PruneLowMagnitude` or `QuantizeWrapper` is profiled as
the layer it wraps, so the profile of a compressed model lines up with the original's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import OptionError, UnsupportedError
from advisor.profile import LayerProfile, ModelProfile

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Work:
    """What a MAC formula reports for one call of a layer."""

    macs: int
    kernel: int = 0
    stride: int = 0
    groups: int = 0


# ---------------------------------------------------------------------------------------------
# MAC formulas. Shapes have the batch dimension dropped; unknown dimensions are 0.


def _prod(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


def _split_channels(layer: Any, shape: Shape) -> tuple[Shape, int]:
    """(spatial dims, channels) of a convolution's input or output shape."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return shape[1:], shape[0]
    return shape[:-1], shape[-1]


def _conv_details(layer: Any, groups: int) -> dict[str, int]:
    return {"kernel": int(layer.kernel_size[0]), "stride": int(layer.strides[0]), "groups": int(groups)}


def _conv(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    _, in_c = _split_channels(layer, inputs[0])
    spatial, out_c = _split_channels(layer, output)
    groups = int(getattr(layer, "groups", 1) or 1)
    macs = _prod(spatial) * out_c * _prod(layer.kernel_size) * in_c // groups
    return Work(macs, **_conv_details(layer, groups))


def _conv_transpose(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    in_spatial, in_c = _split_channels(layer, inputs[0])
    _, out_c = _split_channels(layer, output)
    groups = int(getattr(layer, "groups", 1) or 1)
    macs = _prod(in_spatial) * in_c * _prod(layer.kernel_size) * out_c // groups
    return Work(macs, **_conv_details(layer, groups))


def _depthwise(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    _, in_c = _split_channels(layer, inputs[0])
    spatial, _ = _split_channels(layer, output)
    macs = _prod(spatial) * in_c * int(layer.depth_multiplier) * _prod(layer.kernel_size)
    return Work(macs, **_conv_details(layer, in_c))


def _separable(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    _, in_c = _split_channels(layer, inputs[0])
    spatial, out_c = _split_channels(layer, output)
    mid_c = in_c * int(layer.depth_multiplier)
    macs = _prod(spatial) * mid_c * (_prod(layer.kernel_size) + out_c)
    return Work(macs, **_conv_details(layer, in_c))


def _dense(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    shape = inputs[0]
    return Work(_prod(shape[:-1]) * shape[-1] * int(layer.units))


def _einsum_dense(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    # Every index of the einsum is either in the output or contracted against the kernel, so
    # MACs = output elements x sizes of the kernel's contracted indices.
    operands, out_spec = layer.equation.replace(" ", "").split("->")
    kernel_spec = operands.split(",")[1].replace("...", "")
    contracted = _prod(
        size for letter, size in zip(kernel_spec, layer.kernel.shape) if letter not in out_spec
    )
    return Work(_prod(output) * contracted)


def _recurrent(gates: int) -> Callable[[Any, Sequence[Shape], Shape], Work]:
    def macs(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
        shape = inputs[0]
        steps = shape[-2] if len(shape) >= 2 else 1
        hidden = int(layer.units)
        return Work(gates * (shape[-1] + hidden) * hidden * steps)

    return macs


def _attention(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    query = inputs[0]
    value = inputs[1] if len(inputs) > 1 else query
    key = inputs[2] if len(inputs) > 2 else value
    q_len, k_len, v_len = _prod(query[:-1]), _prod(key[:-1]), _prod(value[:-1])
    # Kernels: query/key (dim, heads, key_dim), value (dim, heads, value_dim), output (heads, value_dim, out).
    d_q, heads, key_dim = (int(d) for d in layer._query_dense.kernel.shape)
    d_k = int(layer._key_dense.kernel.shape[0])
    d_v, _, value_dim = (int(d) for d in layer._value_dense.kernel.shape)
    d_out = int(layer._output_dense.kernel.shape[-1])
    projections = (
        q_len * d_q * heads * key_dim
        + k_len * d_k * heads * key_dim
        + v_len * d_v * heads * value_dim
        + q_len * heads * value_dim * d_out
    )
    scores_and_sum = heads * q_len * k_len * (key_dim + value_dim)
    return Work(projections + scores_and_sum)


def _upsampling(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    # Nearest-neighbour copies (no arithmetic); bilinear weighs 2 taps per spatial dimension.
    taps = 2 ** max(len(output) - 1, 1) if getattr(layer, "interpolation", "nearest") == "bilinear" else 0
    return Work(_prod(output) * taps)


MAC_FORMULAS: dict[str, Callable[[Any, Sequence[Shape], Shape], Work]] = {
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "Conv1DTranspose": _conv_transpose,
    "Conv2DTranspose": _conv_transpose,
    "Conv3DTranspose": _conv_transpose,
    "DepthwiseConv1D": _depthwise,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv1D": _separable,
    "SeparableConv2D": _separable,
    "Dense": _dense,
    "EinsumDense": _einsum_dense,
    "SimpleRNN": _recurrent(1),
    "GRU": _recurrent(3),
    "LSTM": _recurrent(4),
    "MultiHeadAttention": _attention,
    "UpSampling1D": _upsampling,
    "UpSampling2D": _upsampling,
    "UpSampling3D": _upsampling,
}
"""MAC formula per Keras class name; a subclass uses its nearest registered base class."""


def layer_work(layer: Any, inputs: Sequence[Shape], output: Shape) -> Work:
    """The MACs (and convolution details) of one call of a plain, unwrapped layer."""
    for cls in type(layer).__mro__:
        formula = MAC_FORMULAS.get(cls.__name__)
        if formula is not None:
            return formula(layer, inputs, output)
    return Work(0)


# ---------------------------------------------------------------------------------------------
# Wrappers


Part = tuple[Any, Work, int, Shape]
"""One layer as TFLite runs it: (innermost layer, work, parameters, output shape)."""


def _bidirectional(layer: Any, inputs: Sequence[Shape], output: Shape) -> list[Part]:
    # Two recurrent loops, one per direction, whose outputs are merged: profiled as two layers,
    # since each pays its own per-step operators.
    parts = []
    for inner in (layer.forward_layer, layer.backward_layer):
        units = int(getattr(inner, "units", output[-1] if output else 0))
        parts.append((inner, layer_work(inner, inputs, output), inner.count_params(), (*output[:-1], units)))
    return parts


def _time_distributed(layer: Any, inputs: Sequence[Shape], output: Shape) -> list[Part]:
    steps = inputs[0][0] if inputs and inputs[0] else 1
    return [(inner, Work(work.macs * steps, work.kernel, work.stride, work.groups), params, output)
            for inner, work, params, _ in _unwrap(layer.layer, [s[1:] for s in inputs], output[1:])]


WRAPPERS: dict[str, Callable[[Any, Sequence[Shape], Shape], list[Part]]] = {
    "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed,
}
"""Wrappers that change the work of the layer they wrap. Any other Wrapper (TF-MOT's pruning,
quantization and clustering wrappers) is transparent: the inner layer with the same shapes."""


def _unwrap(layer: Any, inputs: Sequence[Shape], output: Shape) -> list[Part]:
    """The layers a network layer runs as (one, or a Bidirectional's two), without wrapper bookkeeping."""
    from measure._tf import keras

    if isinstance(layer, keras().layers.Wrapper):
        special = WRAPPERS.get(type(layer).__name__)
        if special is not None:
            return special(layer, inputs, output)
        return _unwrap(layer.layer, inputs, output)
    return [(layer, layer_work(layer, inputs, output), layer.count_params(), output)]


# ---------------------------------------------------------------------------------------------
# Walking the graph


def _dims(shape: Any) -> Shape:
    """A shape without its batch dimension; unknown dimensions become 0."""
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(0 if d is None else int(d) for d in dims[1:])


def _flat_tensors(structure: Any) -> list[Any]:
    from measure._tf import tf

    return [t for t in tf().nest.flatten(structure) if hasattr(t, "shape")]


def _nodes(model: Any, layer: Any) -> list[Any]:
    """The calls of `layer` that belong to `model`'s graph (a shared layer has several)."""
    network_nodes = getattr(model, "_network_nodes", None) or set()
    own = [
        node for i, node in enumerate(layer._inbound_nodes)
        if f"{layer.name}_ib-{i}" in network_nodes
    ]
    return own or list(layer._inbound_nodes[:1])


def _walk(model: Any, prefix: str) -> Iterator[LayerProfile]:
    from measure._tf import keras

    k = keras()
    for layer in model.layers:
        if isinstance(layer, k.layers.InputLayer):
            continue
        if isinstance(layer, k.Model):
            yield from _walk(layer, f"{prefix}{layer.name}/")
            continue
        nodes = _nodes(model, layer)
        if not nodes:
            raise UnsupportedError(
                f"layer '{layer.name}' of '{model.name}' was never called in a graph: profiling "
                "needs a functional or Sequential model built on keras.Input"
            )
        first_inputs: list[Shape] = []
        parts: list[Part] = []
        for n, node in enumerate(nodes):
            inputs = [_dims(t.shape) for t in _flat_tensors(node.keras_inputs)]
            outputs = [_dims(t.shape) for t in _flat_tensors(node.outputs)]
            called = _unwrap(layer, inputs, outputs[0] if outputs else ())
            if n == 0:
                first_inputs, parts = inputs, called
            else:  # a shared layer: one profile entry, the work of every call
                parts = [(inner, Work(w.macs + again[1].macs, w.kernel, w.stride, w.groups), params, out)
                         for (inner, w, params, out), again in zip(parts, called)]
        for inner, work, params, output in parts:
            yield LayerProfile(
                name=prefix + inner.name,
                type=type(inner).__name__,
                macs=int(work.macs),
                params=int(params),
                input_shapes=tuple(first_inputs),
                output_shape=output,
                kernel=work.kernel,
                stride=work.stride,
                groups=work.groups,
            )


def profile_model(keras_model: Any, *, model: str, family: str, domain: str) -> ModelProfile:
    """Profile a functional or Sequential Keras model, layer by layer in topological order.

    Args:
        keras_model: a built Keras 2 model with fixed non-batch input dimensions.
        model: the canonical model id to record (a zoo name or a file key).
        family: the network family ("resnet", ..., or "user").
        domain: "image", "text", "audio" or "other".

    Returns:
        The profile: per layer its class name, MACs, parameters, input and output shapes
        (batch dimension dropped) and, for convolutions, kernel size, stride and groups.

    Raises:
        OptionError: the model's input has unknown dimensions besides the batch.
        UnsupportedError: a subclassed model, or one without a defined input.
    """
    inputs = getattr(keras_model, "inputs", None)
    if not inputs:
        raise UnsupportedError(
            f"model '{keras_model.name}' has no defined input: profiling needs a functional or "
            "Sequential model built on keras.Input"
        )
    first = inputs[0]
    shape = tuple(first.shape.as_list()[1:])
    if any(d is None for d in shape):
        raise OptionError(
            f"model '{model}' has input shape {shape} with unknown dimensions; "
            "give it a fixed input size before profiling"
        )
    layers = tuple(_walk(keras_model, ""))
    out_shape = keras_model.outputs[0].shape.as_list()
    return ModelProfile(
        model=model,
        family=family,
        input_shape=tuple(int(d) for d in shape),
        input_dtype=first.dtype.name,
        num_classes=int(out_shape[-1] or 0),
        domain=domain,
        layers=layers,
    )


def with_float_file(profile: ModelProfile, keras_model: Any, weights: str) -> ModelProfile:
    """The profile with its float .tflite file's size (`ModelProfile.tflite_bytes`), converted here
    as a measurement converts the uncompressed model; unchanged where the converter refuses it.
    `weights`: "random" (nobody trained them: zero biases) or "trained"."""
    from dataclasses import replace

    from advisor.errors import AdvisorError
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert

    try:
        flatbuffer = convert(Compressed(keras_model, Pipeline.parse("none"), "none"), None)
    except AdvisorError:
        return profile
    return replace(profile, tflite_bytes=len(flatbuffer), tflite_weights=weights)

