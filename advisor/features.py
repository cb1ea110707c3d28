"""The predictor's features: one fixed schema, computed fast.

`FEATURE_NAMES` is the schema: a fixed, ordered tuple whose hash (`schema_hash()`) goes in
every bundle's card, so a bundle trained on another schema is refused rather than misread.
It has six blocks, each filled from one source:

  profile    the network: MACs, parameters, activation elements (sum of output elements: the
             memory traffic a kernel writes) and op counts, in total and per layer group (conv,
             depthwise, dense, recurrent, attention, other), conv/depthwise/dense work split by
             layer size (small kernels run below peak), pointwise-conv work, shares of the
             work by group, arithmetic intensity, input size, domain, and log10 versions of the
             big totals;
  technique  the numeric steps of the pipeline, from `Pipeline.features()` (kind flags, bits,
             sparsity, structure, clusters, step order), plus effective weight/activation bits
             and, per kind, the share of weights and MACs its steps cover (1 for whole-model
             steps; less in a layer-wise plan, `layerwise_features`);
  structure  the structural steps (distill:W, lowrank:R): their settings, the share of weights
             factorised, and parameter and MAC ratios of the network they build to the original.
             The profile block of such a row is that built network's (`advisor.layers.transform`),
             so its latency is predicted as a network's, and the numeric steps as a ratio to it;
  device     the hardware: threads, CPUs, architecture, memory, accelerator, ISA flags;
  context    where a row comes from (`source_published`), and whether its network had random
             weights (`weights_random`: a measured zoo or sampled network nobody trained; 0 for
             a user's trained network, what predictions are for);
  derived    products across blocks (parameter bytes at the pipeline's weight width, non-zero
             parameters), computed after the blocks are assembled.

Why per-group work: latency of an unseen network is generalised best as a sum of per-kernel
costs (nn-Meter predicts per kernel and sums); the rows only time whole networks, so the
predictor learns per-group costs from per-group work: `advisor.predictor` fits a non-negative
kernel-sum prior on `macs_<group>`, `n_<group>` and `act_elements` per machine and thread count,
and trees on the rest (log of latency over the prior for the baseline, plus log of the ratio to
the baseline for the pipeline). A depthwise MAC costs several times a pointwise one, and a dense
or recurrent MAC is memory-bound: the group columns and shares let the model tell the difference
where plain FLOPs cannot. The held-out numbers behind these choices are in `advisor.predictor`'s
docstring. `profile_keys` hashes the profile block, so the predictor can tell a network it was
trained on from a new one.

Missing values are NaN (a row without a stored profile has only its total MACs and
parameters; a fingerprint without ISA flags leaves them NaN): the trees route NaN by their
learned default, never by a guessed zero.

`feature_matrix` builds the rows for many candidate pipelines of one model on one device at
once: the profile and device parts are computed once and broadcast, the technique part comes
from a per-spec cache, so the cost per candidate is a row copy (the advisor scores well over
10,000 candidates per second). Nothing here imports pandas or xgboost.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from advisor.profile import LayerProfile, ModelProfile
from advisor.techniques import TECHNIQUES, Pipeline

# ---------------------------------------------------------------------------------------------
# Layer groups: a data table, not an if-chain. Types not listed are "other".

GROUPS = ("conv", "depthwise", "dense", "recurrent", "attention", "other")
#: Groups whose kernels vectorise over output channels, and the tile they are rounded up to:
#: a 20-channel convolution runs as a 32-channel one (see `_padded`).
PADDED_GROUPS = ("conv", "depthwise", "dense")
CHANNEL_TILE = 32

LAYER_GROUPS: dict[str, str] = {
    **dict.fromkeys(("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                     "Convolution1D", "Convolution2D", "Convolution3D"), "conv"),
    **dict.fromkeys(("DepthwiseConv1D", "DepthwiseConv2D"), "depthwise"),
    **dict.fromkeys(("Dense", "EinsumDense"), "dense"),
    **dict.fromkeys(("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
                     "CuDNNLSTM", "CuDNNGRU"), "recurrent"),
    **dict.fromkeys(("MultiHeadAttention", "Attention", "AdditiveAttention", "GroupQueryAttention"), "attention"),
}

#: A depthwise convolution followed by a pointwise one: its work is split between the two groups.
SEPARABLE = frozenset({"SeparableConv1D", "SeparableConv2D"})
#: Weighted layers whose weights the converter quantizes with one scale for the whole tensor, so
#: whose channels carry no quantization parameters (measured, tf 2.21: a PReLU's alpha under
#: full-integer int8; counting its channels, the size prior put such files at up to 2.4 times their size).
PER_TENSOR_LAYERS = frozenset({"PReLU"})
#: Weighted layers whose weights dynamic-range quantization leaves in float whatever their size
#: (measured, tf 2.21: a PReLU's 1,024 alphas).
DYNAMIC_FLOAT_LAYERS = frozenset({"PReLU"})

#: Layers that cost nothing in a converted model: removed at inference (dropout, noise), folded
#: into the preceding convolution (batch norm), fused into it (ReLU), or a view (reshape).
FREE_LAYERS = frozenset({
    "InputLayer", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Flatten", "Reshape", "ReLU",
})

DOMAINS = ("image", "text", "audio")

#: Layer sizes (MACs of one layer) whose cost per MAC differs: a small kernel cannot fill the
#: vector units and threads, a large one can. Work in these groups is also split by size.
SIZE_BUCKETS = (("small", 0.0, 2.0**18), ("mid", 2.0**18, 2.0**22), ("large", 2.0**22, math.inf))
BUCKETED_GROUPS = ("conv", "depthwise", "dense")
#: Layers whose parameters the TFLite converter folds into the previous operation.
FOLDED_LAYERS = frozenset({"BatchNormalization"})
#: Layers a `FOLDED_LAYERS` layer folds into when it directly follows one of them. After anything
#: else (a concatenation, an add, the input: DenseNet's and ResNet v2's pre-activation batch
#: norms) it runs as a multiply and an add of its own.
_FOLD_TARGETS = frozenset({*SEPARABLE, *(t for t, g in LAYER_GROUPS.items() if g in ("conv", "depthwise", "dense"))})

#: The TFLite converter's dynamic-range quantization skips tensors smaller than this.
DYNAMIC_RANGE_MIN_ELEMENTS = 1024
#: Layers whose kernel a pruned float model stores sparse-encoded (4 bytes per non-zero value, an
#: index per non-zero and a segment entry per row: `_sparse_index`; plus ~300 bytes per tensor of
#: sparsity metadata and a DENSIFY operator): what `measure.compress` prunes (TF-MOT wraps them
#: under tf-keras 2.21) and the converter encodes sparse. Measured: bench/results/sparse_storage.md. Embeddings are
#: pruned but stored dense (GATHER takes no sparse tensor); depthwise and recurrent layers are not
#: pruned at all. A separable convolution's pointwise kernel counts as a Conv2D.
SPARSE_STORED_LAYERS = frozenset({"Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Dense"})
#: Kept shares (1 - sparsity) at which a network's sparse segment bytes are tabulated
#: (`sparse_segments_<k>`); a row takes the nearest in log scale to its own.
SEGMENT_KEPT = (0.5, 0.2, 0.1)
SPARSE_INDEX_NAMES = ("sparse_index_full", *(f"sparse_segments_{k:g}" for k in SEGMENT_KEPT))
#: TFLite operators and tensors one Keras layer becomes when converted (measured by
#: `bench/tflite_ops.py`, bench/results/tflite_ops.md; float conversion): the file pays for each
#: operator and tensor (shapes, names, quantization parameters), and an invoke for each operator.
#: Layers not listed become one operator with one output tensor (weighted ones: plus a tensor per
#: weight); `FREE_LAYERS` become none.
TFLITE_OPS: dict[str, tuple[int, int]] = {
    "SeparableConv2D": (2, 5), "SeparableConv1D": (2, 5), "Activation": (2, 2), "ZeroPadding2D": (1, 2),
    "LayerNormalization": (12, 18), "MultiHeadAttention": (16, 25), "LSTM": (1, 13), "GRU": (29, 63),
    # A 1-D convolution or pooling runs as its 2-D kernel between EXPAND_DIMS and RESHAPE (measured:
    # tf 2.21, Conv1D and MaxPooling1D on a (16000, 1) signal).
    "Conv1D": (3, 6), "MaxPooling1D": (3, 4), "AveragePooling1D": (3, 4),
    # RESIZE_NEAREST_NEIGHBOR or RESIZE_BILINEAR, with its output size as a constant tensor.
    "UpSampling2D": (1, 2),
    # A MUL and an ADD, each with its constant (measured: tf 2.21, Rescaling(1 / 127.5, offset=-1)).
    "Rescaling": (2, 4),
}
#: Operators a dense layer over a sequence becomes with a dynamic batch: the converter computes
#: the flattened shape (SHAPE, GATHER, REDUCE_PROD, CONCATENATION, PACK), reshapes, runs one
#: FULLY_CONNECTED and reshapes back (measured: tf 2.21, a Dense on (32, 64) tokens).
SEQUENCE_DENSE_OPS = 9
#: Layers whose weights quantization-aware training leaves in float32 (TF-MOT's 8-bit scheme has
#: no quantize config for them): their bytes stay 4 a weight in a qat-int8 file.
QAT_FLOAT_LAYERS = frozenset({"Embedding", "PositionEmbedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional",
                              "MultiHeadAttention"})
#: Recurrent layers the converter turns into a WHILE loop (an LSTM becomes one fused operator): one
#: that returns its sequence writes it into a TensorArray whose initial value, a float constant of
#: sequence length x units, is stored in the file (measured: tf 2.21, GRU and SimpleRNN of 24 units on
#: 40 steps, a [40, 1, 24] float32 constant; none for the last layer, which returns its final state).
#: A float16 file halves it with the weights, a dynamic-range one keeps it float32
#: (`loop_buffers`; on the sampled GRU networks, 0.80 correlation with the float16 size's error
#: before it was counted).
LOOP_RECURRENT_LAYERS = frozenset({"GRU", "SimpleRNN"})
#: The loop iterations of looped recurrent layers (`loop_steps`), all of them and those of layers
#: that return their sequence: the latency prior's own per-step costs (`LOOP_STEP_NAMES`).
LOOP_STEP_NAMES = ("steps_recurrent", "seq_steps_recurrent")


def loop_steps(layer: LayerProfile) -> tuple[float, float]:
    """(loop iterations, those writing a sequence) of one layer: its input's time steps if the
    converter turns it into a WHILE loop (`LOOP_RECURRENT_LAYERS`), 0 otherwise. Each iteration
    dispatches the loop body's operators again (29 for a GRU), and one that returns its sequence
    also writes the step into a TensorArray. Measured on the Xeon 62bed0af3796, 16-unit GRUs: about
    1 us a step for one that returns its last state (sampled:gru:15, 192 steps, 0.17 ms in all) and
    4.5-5.4 us for one that returns its sequence (sampled:gru:3 and :23; three layers on 256 steps
    take 3.0 ms), a cost their MACs do not scale with."""
    if layer.type not in LOOP_RECURRENT_LAYERS or not layer.input_shapes or len(layer.input_shapes[0]) < 2:
        return 0.0, 0.0
    steps = float(layer.input_shapes[0][0])
    return steps, steps if len(layer.output_shape) >= 2 else 0.0

#: Instruction-set extensions that change kernel speed (a curated, stable subset of
#: `advisor.fingerprint.ISA_FLAGS`: changing this list changes the schema).
ISA_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                "neon", "asimd", "asimdhp", "asimddp", "i8mm", "sve")

ARCHES = {"x86_64": "arch_x86_64", "amd64": "arch_x86_64", "aarch64": "arch_aarch64", "arm64": "arch_aarch64",
          "armv7l": "arch_arm32", "armv6l": "arch_arm32", "armv8l": "arch_arm32"}


def _profile_names() -> tuple[str, ...]:
    per_group = tuple(f"{kind}_{g}" for g in GROUPS for kind in ("macs", "params", "act", "n"))
    per_bucket = tuple(f"macs_{g}_{b}" for g in BUCKETED_GROUPS for b, _, _ in SIZE_BUCKETS)
    shares = tuple(f"share_{g}" for g in GROUPS if g != "other")
    return ("macs", "params", "depth", "n_ops", "input_size", "input_elements", "act_elements", "act_peak",
            "macs_per_act", "macs_per_op", "params_per_mac", "num_classes", "params_folded", "params_small",
            "n_weighted", "channels_weighted", "channels_dense", "channels_dynamic", "params_sparse_stored",
            "n_sparse_stored", *SPARSE_INDEX_NAMES, "params_qat_float", "loop_buffers", *LOOP_STEP_NAMES,
            "tflite_ops", "tflite_tensors", *(f"macs_{g}_padded" for g in PADDED_GROUPS), "act_in",
            *(f"act_in_{g}" for g in GROUPS),
            *(f"domain_{d}" for d in DOMAINS), *per_group, *per_bucket, "macs_conv_k1", "macs_conv_strided",
            *shares, "share_conv_k1", "share_act_other",
            "log_macs", "log_params", "log_act_elements", "log_input_elements")


def _technique_names() -> tuple[str, ...]:
    steps = [cls for cls in TECHNIQUES if cls.kind != "none" and not cls.structural]
    has = tuple(f"has_{_key(cls.name)}" for cls in steps)
    kinds = tuple(dict.fromkeys(cls.kind for cls in steps))
    step_keys: set[str] = set()
    for cls in steps:
        step_keys.update(cls().features())  # every technique has default parameters
    cover = tuple(f"cover_{k}{m}" for k in LAYERWISE_KINDS for m in ("", "_macs"))
    return ("n_steps", *has, *(f"order_{k}" for k in kinds), *(f"kind_{k}" for k in kinds),
            *sorted(step_keys), "eff_weight_bits", "eff_act_bits", "density", "cluster_bits", *cover,
            "prune_index_bytes", *LAYERWISE_QAT_NAMES)


def _structure_names() -> tuple[str, ...]:
    steps = [cls for cls in TECHNIQUES if cls.structural]
    keys: set[str] = set()
    for cls in steps:
        keys.update(cls().features())
    return (*(f"has_{_key(cls.name)}" for cls in steps), *sorted(keys), "cover_factorize",
            "structure_params_ratio", "structure_macs_ratio")


def _key(name: str) -> str:
    return name.replace("-", "_").replace(":", "_")


#: Numeric step kinds a layer-wise plan may give to some layers only: their coverage is a feature.
LAYERWISE_KINDS = ("prune", "cluster", "quantize")
#: What quantization-aware training of some layers only adds to the converted graph (0 for every
#: other plan): each such layer sits between a QUANTIZE and a DEQUANTIZE, and a batch norm right
#: after one no longer folds into it (annotated layer by layer, TF-MOT folds none) but runs as a
#: MUL and an ADD with float constants (measured: sampled:depthwise_separable:2, 8 layers taken,
#: 8 QUANTIZE, 8 DEQUANTIZE, 8 MUL, 8 ADD; a file twice the float one's size). Only the layers
#: taken carry quantization parameters: their weight tensors and output channels (all, and those
#: of dense layers), counted as `n_weighted`, `channels_weighted` and `channels_dense` count them
#: for the whole network.
LAYERWISE_QAT_NAMES = ("qat_split_layers", "qat_unfolded_bn", "qat_bn_params", "qat_weighted", "qat_channels",
                       "qat_channels_dense")

PROFILE_NAMES = _profile_names()
TECHNIQUE_NAMES = _technique_names()
STRUCTURE_NAMES = _structure_names()
DEVICE_NAMES = ("threads", "logical_cpus", "physical_cores", "thread_share", "memory_gib", "accelerator",
                "arch_x86_64", "arch_aarch64", "arch_arm32", *(f"isa_{f}" for f in ISA_FEATURES))
CONTEXT_NAMES = ("source_published", "weights_random", "float_file_bytes", "float_file_random")
DERIVED_NAMES = ("param_bytes", "param_nonzero", "param_sparse", "sparse_tensors", "channels_bias", "bias_tensors",
                 "plan_tensors", "float_file_excess")
#: Steps that train the network (fine-tuning, a student, a factorised network's recovery): after
#: them a random-weight network's biases are no longer zero.
TRAINING_STEPS = tuple(f"has_{_key(cls.name)}" for cls in TECHNIQUES if cls.needs_finetune or cls.structural)

#: The feature schema: every matrix the predictor sees has these columns, in this order.
FEATURE_NAMES: tuple[str, ...] = (PROFILE_NAMES + TECHNIQUE_NAMES + STRUCTURE_NAMES + DEVICE_NAMES + CONTEXT_NAMES
                                  + DERIVED_NAMES)

INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
if len(INDEX) != len(FEATURE_NAMES):  # pragma: no cover - a programming error
    raise RuntimeError("duplicate feature names")


def _block(names: tuple[str, ...]) -> slice:
    start = INDEX[names[0]]
    return slice(start, start + len(names))


PROFILE_BLOCK, TECHNIQUE_BLOCK = _block(PROFILE_NAMES), _block(TECHNIQUE_NAMES)
STRUCTURE_BLOCK = _block(STRUCTURE_NAMES)
DEVICE_BLOCK, CONTEXT_BLOCK, DERIVED_BLOCK = _block(DEVICE_NAMES), _block(CONTEXT_NAMES), _block(DERIVED_NAMES)


def schema_hash(names: Sequence[str] = FEATURE_NAMES) -> str:
    """A short hash of a feature schema (names and order); bundles record it."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Profile features.


def _elements(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _in_channels(layer: LayerProfile) -> int:
    """The channels of a layer's (first) input, 0 where its shape is not recorded."""
    return int(layer.input_shapes[0][-1]) if layer.input_shapes and layer.input_shapes[0] else 0


def _separable_split(layer: LayerProfile) -> tuple[int, int]:
    """(depthwise MACs, depthwise params) of a separable convolution, from its shapes."""
    if not layer.input_shapes or not layer.output_shape:
        return 0, 0
    c_in = _in_channels(layer)
    spatial = _elements(layer.output_shape[:-1])
    taps = max(int(layer.kernel), 1) ** max(len(layer.output_shape) - 1, 1)
    return min(spatial * c_in * taps, layer.macs), min(c_in * taps, layer.params)


def _log10(x: float) -> float:
    return math.log10(1.0 + x) if x == x else float("nan")


def _padded(macs: float, channels: int) -> float:
    """MACs as a SIMD kernel executes them: output channels rounded up to whole vector tiles."""
    if channels <= 0:
        return macs
    return macs * (-(-channels // CHANNEL_TILE) * CHANNEL_TILE) / channels


def _kernel_params(layer: LayerProfile) -> float:
    """Weights of the kernel a pruned float model stores sparse-encoded (0 for other layers).

    A convolution or dense kernel has MACs / (output positions) weights, bias excluded; a separable
    convolution's pointwise kernel is input x output channels."""
    if not layer.output_shape or not layer.params:
        return 0.0
    cout = int(layer.output_shape[-1])
    if layer.type in SEPARABLE:
        cin = _in_channels(layer)
        return float(min(cin * cout, layer.params))
    if layer.type not in SPARSE_STORED_LAYERS or not layer.output_elements:
        return 0.0
    return _macs_kernel(layer, cout)


def _macs_kernel(layer: LayerProfile, cout: float) -> float:
    """A convolution or dense layer's kernel weights from its work: its MACs per position (at most
    its parameters), so with or without a bias. Positions are the output's, except for a
    transposed convolution, whose MACs `measure.profiling` counts per input position."""
    positions = layer.output_elements / cout
    if layer.type.endswith("Transpose") and layer.input_shapes and layer.input_shapes[0]:
        positions = float(math.prod(int(d) for d in layer.input_shapes[0][:-1]))
    return float(min(layer.macs / positions, layer.params)) if positions else float(layer.params)


def _kernel_elements(layer: LayerProfile, cout: float) -> float:
    """The elements of a layer's weight kernel, its bias excluded: `_macs_kernel` for a
    convolution or dense layer (which may have no bias: a batch norm follows it), the parameters
    less one bias per output channel elsewhere."""
    if LAYER_GROUPS.get(layer.type) in ("conv", "depthwise", "dense") and layer.output_elements and cout:
        return _macs_kernel(layer, cout)
    return float(layer.params) - cout


def _quantized_kernels(layer: LayerProfile) -> tuple[tuple[float, float], ...]:
    """(weights, channels with quantization parameters) of each kernel of a weighted layer the
    converter quantizes: a separable convolution has two (the depthwise kernel, a channel per input
    channel, and the pointwise one), a `PER_TENSOR_LAYERS` layer one without per-channel
    parameters, any other layer one with a channel per output channel."""
    cout = float(layer.output_shape[-1]) if layer.output_shape else 0.0
    if layer.type in SEPARABLE:
        cin = float(_in_channels(layer))
        return (float(_separable_split(layer)[1]), cin), (_kernel_params(layer), cout)
    if layer.type in PER_TENSOR_LAYERS:
        return ((float(layer.params), 0.0),)
    return ((_kernel_elements(layer, cout), cout),)


def _no_bias_tensor(layer: LayerProfile, following: tuple[LayerProfile, bool] | None) -> int:
    """1 where a convolution or dense layer has no bias and no batch norm folds into it (the first
    half of a factorised layer, `measure.rebuild`): its converted operator has no bias tensor,
    which `TFLITE_OPS` and the default count otherwise assume. 0 elsewhere."""
    if layer.type not in SPARSE_STORED_LAYERS or not layer.params or abs(layer.params - _kernel_params(layer)) >= 0.5:
        return 0
    folds = following is not None and following[1] and following[0].type in FOLDED_LAYERS
    return 0 if folds else 1


def _index_width(largest: float) -> int:
    """Bytes per entry of a sparse tensor's index array whose largest value is `largest`: the
    converter stores uint8, uint16 or int32 arrays, the narrowest that holds it."""
    return 1 if largest < 256 else (2 if largest < 65536 else 4)


def _sparse_index(layer: LayerProfile, kernel: float,
                  kept: Sequence[float] = SEGMENT_KEPT) -> tuple[float, tuple[float, ...]]:
    """What a sparse-encoded kernel of `kernel` weights adds beyond its non-zero values, as the
    TFLite converter stores it (measured: bench/sparse_storage.py; every dimension dense but the
    last, which is compressed-sparse-row): one index per non-zero, as wide as the input channels
    need (`_index_width(c_in - 1)`), and one segment entry per row of the other dimensions (output
    channels x kernel positions) plus one, as wide as the non-zero count needs. Returns (index
    bytes at full density, segment bytes at each kept share of `kept`)."""
    cin = _in_channels(layer)
    if cin <= 0:
        return 0.0, (0.0,) * len(kept)
    rows = max(kernel / cin, 1.0) + 1.0
    return kernel * _index_width(cin - 1), tuple(rows * _index_width(k * kernel) for k in kept)


#: A separable convolution's second half (its 1x1 convolution), as a unit of its own.
POINTWISE = "pointwise"


@dataclass(frozen=True)
class Unit:
    """One kernel a network runs: an executed layer, or half of a separable convolution.

    `padded` is its MACs with output channels rounded up to SIMD tiles (vectorised groups; the
    plain MACs otherwise); `written` and `read` its output and input elements (a separable
    convolution's depthwise intermediate is approximated by the output, which the pointwise half
    reads)."""

    layer: LayerProfile
    group: str
    type: str
    macs: float
    params: float
    padded: float
    written: float
    read: float
    c_in: int
    c_out: int
    #: TFLite operators it becomes (`unit_ops`): the interpreter pays a dispatch for each.
    ops: int = 1


def free_layers(profile: ModelProfile) -> Iterator[tuple[LayerProfile, bool]]:
    """Each layer of a network with whether the converted network runs nothing for it
    (`FREE_LAYERS`, and a batch norm folded into the convolution or dense layer just before it)."""
    previous: LayerProfile | None = None
    for layer in profile.layers:
        folded = (layer.type in FOLDED_LAYERS and previous is not None and previous.type in _FOLD_TARGETS
                  and tuple(previous.output_shape) == tuple(layer.output_shape))
        yield layer, layer.type in FREE_LAYERS or folded
        previous = layer


def executed_units(profile: ModelProfile) -> Iterator[Unit]:
    """The kernels a converted network runs, in order: free layers (folded, fused, views) skipped,
    separable convolutions split into their depthwise and pointwise halves. The per-group work
    features and the per-layer latency model (`advisor.layer_costs`) both count these."""
    for layer, free in free_layers(profile):
        if free:
            continue
        written = float(layer.output_elements)
        read = float(sum(_elements(shape) for shape in layer.input_shapes))
        c_in = _in_channels(layer)
        c_out = int(layer.output_shape[-1]) if layer.output_shape else 0
        if layer.type in SEPARABLE:
            dw_macs, dw_params = _separable_split(layer)
            pw_macs = layer.macs - dw_macs
            yield Unit(layer, "depthwise", layer.type, dw_macs, dw_params, _padded(dw_macs, c_in), written, read,
                       c_in, c_in)
            yield Unit(layer, "conv", POINTWISE, pw_macs, layer.params - dw_params, _padded(pw_macs, c_out), written,
                       written, c_in, c_out)
            continue
        g = LAYER_GROUPS.get(layer.type, "other")
        padded = _padded(layer.macs, c_out) if g in PADDED_GROUPS else layer.macs
        yield Unit(layer, g, layer.type, layer.macs, layer.params, padded, written, read, c_in, c_out,
                   unit_ops(layer))


def unit_ops(layer: LayerProfile) -> int:
    """TFLite operators one executed (non-separable) layer becomes, as the interpreter dispatches them
    per invoke: `TFLITE_OPS`, and a dense layer over a sequence (input of rank 2 or more besides the
    batch) `SEQUENCE_DENSE_OPS`. A recurrent layer counts one: a GRU's operators sit in a loop
    body run once per step, and those steps have columns of their own (`loop_steps`). (Counting a
    GRU's steps here, a dispatch each, was tried on 2026-12-07: the one shared per-op coefficient
    then priced an LSTM layer's fixed cost per GRU step, and where few rows fix it, 2-thread rows on
    one machine, held-out GRU networks came out 20 times too slow.)"""
    if layer.type in ("Dense", "EinsumDense") and layer.input_shapes and len(layer.input_shapes[0]) >= 2:
        return SEQUENCE_DENSE_OPS
    if LAYER_GROUPS.get(layer.type) == "recurrent":
        return 1
    return TFLITE_OPS.get(layer.type, (1, 0))[0]


def profile_features(profile: ModelProfile) -> dict[str, float]:
    """The profile block for one network (every name in `PROFILE_NAMES`)."""
    macs = dict.fromkeys(GROUPS, 0.0)
    params = dict.fromkeys(GROUPS, 0.0)
    act = dict.fromkeys(GROUPS, 0.0)
    act_in = dict.fromkeys(GROUPS, 0.0)  # elements read: a kernel's input traffic
    count = dict.fromkeys(GROUPS, 0.0)
    bucket = {f"macs_{g}_{b}": 0.0 for g in BUCKETED_GROUPS for b, _, _ in SIZE_BUCKETS}
    k1 = strided = 0.0
    peak = 0.0

    def add_bucket(g: str, m: float) -> None:
        if g in BUCKETED_GROUPS:
            for b, lo, hi in SIZE_BUCKETS:
                if lo <= m < hi:
                    bucket[f"macs_{g}_{b}"] += m

    folded = small = weighted = channels = dense_channels = dynamic_channels = 0.0
    sparse_stored = n_sparse = qat_float = index_full = loop_buffers = 0.0
    steps = [0.0] * len(LOOP_STEP_NAMES)
    segment_bytes = [0.0] * len(SEGMENT_KEPT)
    tfl_ops = tfl_tensors = 0.0
    padded = dict.fromkeys(PADDED_GROUPS, 0.0)
    layers = list(free_layers(profile))
    for i, (layer, free) in enumerate(layers):
        if not free:
            ops, tensors = TFLITE_OPS.get(layer.type, (1, 1 + (2 if layer.params else 0)))
            tfl_ops += ops
            tfl_tensors += tensors - _no_bias_tensor(layer, layers[i + 1] if i + 1 < len(layers) else None)
        kernel = _kernel_params(layer)
        if kernel:
            sparse_stored += kernel
            n_sparse += 1.0
            full, segments = _sparse_index(layer, kernel)
            index_full += full
            segment_bytes = [a + b for a, b in zip(segment_bytes, segments)]
        if layer.type in QAT_FLOAT_LAYERS:
            qat_float += layer.params
        if layer.type in LOOP_RECURRENT_LAYERS and len(layer.output_shape) >= 2:
            loop_buffers += float(_elements(layer.output_shape))
        kernels = _quantized_kernels(layer) if layer.params and layer.type not in FOLDED_LAYERS else ()
        if layer.type in FOLDED_LAYERS:
            folded += layer.params  # folded into the preceding convolution by the converter
        elif layer.type in SEPARABLE and kernels:  # its depthwise kernel stays float or not on its own
            dw_params = kernels[0][0]
            small += sum(p for p in (dw_params, layer.params - dw_params) if 0 < p < DYNAMIC_RANGE_MIN_ELEMENTS)
        elif 0 < layer.params < DYNAMIC_RANGE_MIN_ELEMENTS or layer.type in DYNAMIC_FLOAT_LAYERS:
            small += layer.params
        if kernels:
            # Weight tensors and their output channels: what per-tensor and per-channel
            # quantization parameters (scales, zero points) cost in the file.
            weighted += float(len(kernels))
            channels += sum(c for _, c in kernels)
            # Quantization-aware training gives a dense kernel one scale, a convolution one per
            # channel; dynamic-range quantization scales only kernels of 1,024 weights or more.
            dense_channels += sum(c for _, c in kernels) if LAYER_GROUPS.get(layer.type) == "dense" else 0.0
            dynamic_channels += sum(c for k, c in kernels if k >= DYNAMIC_RANGE_MIN_ELEMENTS)
    for u in executed_units(profile):
        g = u.group
        peak = max(peak, u.written)
        add_bucket(g, u.macs)
        if g in padded:
            padded[g] += u.padded
        macs[g] += u.macs
        params[g] += u.params
        act[g] += u.written
        act_in[g] += u.read
        count[g] += u.ops
        steps = [a + b for a, b in zip(steps, loop_steps(u.layer))]
        if g == "conv":
            pointwise = u.type == POINTWISE
            k1 += u.macs if pointwise or u.layer.kernel == 1 else 0
            strided += u.macs if not pointwise and u.layer.stride > 1 else 0
    total_macs, total_params = float(profile.macs), float(profile.params)
    total_act, n_ops = sum(act.values()), sum(count.values())
    input_elements = float(_elements(profile.input_shape))

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    out: dict[str, float] = {
        "macs": total_macs, "params": total_params, "depth": float(profile.depth), "n_ops": n_ops,
        "input_size": float(profile.input_shape[0]) if profile.input_shape else float("nan"),
        "input_elements": input_elements, "act_elements": total_act, "act_peak": peak,
        "macs_per_act": ratio(total_macs, total_act), "macs_per_op": ratio(total_macs, n_ops),
        "params_per_mac": ratio(total_params, total_macs), "num_classes": float(profile.num_classes),
        "params_folded": folded, "params_small": small, "n_weighted": weighted, "channels_weighted": channels,
        "channels_dense": dense_channels, "channels_dynamic": dynamic_channels,
        "params_sparse_stored": sparse_stored, "n_sparse_stored": n_sparse, "params_qat_float": qat_float,
        "loop_buffers": loop_buffers, **dict(zip(LOOP_STEP_NAMES, steps)), "sparse_index_full": index_full,
        **{f"sparse_segments_{k:g}": b for k, b in zip(SEGMENT_KEPT, segment_bytes)},
        "tflite_ops": tfl_ops, "tflite_tensors": tfl_tensors,
        **{f"macs_{g}_padded": padded[g] for g in PADDED_GROUPS},
        "act_in": sum(act_in.values()), **{f"act_in_{g}": act_in[g] for g in GROUPS},
        **{f"domain_{d}": float(profile.domain == d) for d in DOMAINS},
        "macs_conv_k1": k1, "macs_conv_strided": strided,
        "share_conv_k1": ratio(k1, total_macs), "share_act_other": ratio(act["other"], total_act),
        "log_macs": _log10(total_macs), "log_params": _log10(total_params),
        "log_act_elements": _log10(total_act), "log_input_elements": _log10(input_elements),
        **bucket,
    }
    for g in GROUPS:
        out.update({f"macs_{g}": macs[g], f"params_{g}": params[g], f"act_{g}": act[g], f"n_{g}": count[g]})
        if g != "other":
            out[f"share_{g}"] = ratio(macs[g], total_macs)
    return out


def partial_profile_features(macs: float | None, params: float | None, input_size: float | None,
                             domain: str | None) -> dict[str, float]:
    """The profile block when only a row's totals are known (no stored profile): the rest is NaN."""
    nan = float("nan")
    out = dict.fromkeys(PROFILE_NAMES, nan)
    m = float(macs) if macs is not None else nan
    p = float(params) if params is not None else nan
    out.update({"macs": m, "params": p, "log_macs": _log10(m), "log_params": _log10(p),
                "input_size": float(input_size) if input_size is not None else nan})
    if domain is not None:
        out.update({f"domain_{d}": float(domain == d) for d in DOMAINS})
    return out


# ---------------------------------------------------------------------------------------------
# Technique features.


def technique_features(pipeline: Pipeline | str) -> dict[str, float]:
    """The technique block for one pipeline (or spec string), every name in `TECHNIQUE_NAMES`.

    It describes the numeric steps (prune, cluster, quantize) as if each applied to the whole
    model; `layerwise_features` corrects it for steps given to some layers only.

    Raises:
        SpecError: a malformed spec string.
    """
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    numerics = pipeline.numerics
    raw = numerics.features()
    out = {name: float(raw.get(name, 0.0)) for name in TECHNIQUE_NAMES}
    for step in numerics.steps:
        if step.kind != "none":
            out[f"kind_{step.kind}"] = 1.0
            if step.kind in LAYERWISE_KINDS:
                out[f"cover_{step.kind}"] = out[f"cover_{step.kind}_macs"] = 1.0
    _derive_technique(out)
    return out


def _derive_technique(out: dict[str, float]) -> None:
    out["eff_weight_bits"] = out.get("weight_bits") or 32.0
    out["eff_act_bits"] = out.get("act_bits") or 32.0
    if out.get("cover_quantize", 1.0) < 1.0 and out.get("weight_bits"):
        c = out["cover_quantize"]  # the layers left out stay float32
        out["eff_weight_bits"] = out["weight_bits"] * c + 32.0 * (1.0 - c)
        out["eff_act_bits"] = out["act_bits"] * out["cover_quantize_macs"] + 32.0 * (1.0 - out["cover_quantize_macs"])
    out["density"] = 1.0 - out.get("sparsity", 0.0)
    clusters = out.get("clusters", 0.0)
    if "cluster_bits" not in out or not out.get("cluster_bits"):
        out["cluster_bits"] = math.log2(clusters) if clusters else 0.0


def layerwise_features(profile: ModelProfile, pipeline: Pipeline) -> dict[str, float]:
    """The technique block of a pipeline whose numeric steps name their layers, on `profile` (the
    network they act on): per kind, the share of weights and of MACs its steps cover, and
    sparsity, cluster bits and weight width averaged over all weights (uncovered layers count as
    dense, unclustered, float32)."""
    from advisor.layers import assign, weighted

    out = technique_features(pipeline)
    layers = {ly.name: ly for ly in weighted(profile)}
    total_p = float(sum(ly.params for ly in layers.values())) or 1.0
    total_m = float(sum(ly.macs for ly in layers.values())) or 1.0
    numerics = pipeline.numerics.steps
    for kind in LAYERWISE_KINDS:
        steps = [st for st in numerics if st.kind == kind]
        if not steps or (len(steps) == 1 and steps[0].layers == "all"):
            continue
        taken = assign(profile, steps)
        p = {n: float(layers[n].params) for n in taken if n in layers}
        out[f"cover_{kind}"] = sum(p.values()) / total_p
        out[f"cover_{kind}_macs"] = sum(float(layers[n].macs) for n in p) / total_m
        feats = [(taken[n].features(), w) for n, w in p.items()]
        if kind == "prune":
            out["sparsity"] = sum(f.get("sparsity", 0.0) * w for f, w in feats) / total_p
            out["structured"] = float(any(f.get("structured") for f, _ in feats))
            out["prune_index_bytes"] = _prune_index_bytes(profile, taken)
        elif kind == "cluster":
            bits = sum(math.log2(f["clusters"]) * w for f, w in feats) / max(sum(p.values()), 1.0)
            out["cluster_bits"], out["clusters"] = bits, 2.0 ** bits
        elif kind == "quantize":
            _layerwise_qat(profile, {n for n, st in taken.items() if st.name == "qat-int8"}, out)
    _derive_technique(out)
    return out


def _prune_index_bytes(profile: ModelProfile, taken: Mapping[str, Any]) -> float:
    """The index and segment bytes of the sparse-encoded kernels of a layer-wise prune, layer by
    layer at each layer's own kept share (`_sparse_index`): with sparsities that differ between
    layers, the network's average sparsity misstates them (by up to 5% of the file, measured)."""
    total = 0.0
    for layer in profile.layers:
        step = taken.get(layer.name)
        kernel = _kernel_params(layer) if step is not None else 0.0
        if not kernel:
            continue
        kept = 1.0 - float(step.features().get("sparsity", 0.0))
        full, (segments,) = _sparse_index(layer, kernel, (kept,))
        total += kept * full + segments
    return total


def _layerwise_qat(profile: ModelProfile, qat: set[str], out: dict[str, float]) -> None:
    """`LAYERWISE_QAT_NAMES` of a plan whose quantization-aware training takes the layers `qat`."""
    previous: LayerProfile | None = None
    for layer in profile.layers:
        if layer.name in qat:
            out["qat_split_layers"] += 1.0
            if layer.params:
                kernels = _quantized_kernels(layer)
                channels = sum(c for _, c in kernels)
                out["qat_weighted"] += float(len(kernels))
                out["qat_channels"] += channels
                out["qat_channels_dense"] += channels if LAYER_GROUPS.get(layer.type) == "dense" else 0.0
        if layer.type in FOLDED_LAYERS and previous is not None and previous.name in qat:
            out["qat_unfolded_bn"] += 1.0
            out["qat_bn_params"] += float(layer.params)
        previous = layer


def structure_features(pipeline: Pipeline, profile: ModelProfile | None = None,
                       built: ModelProfile | None = None) -> dict[str, float]:
    """The structure block: which structural steps the pipeline has, their settings, and (with the
    original `profile` and the `built` one) the share of weights factorised and the ratios of
    parameters and MACs of the network they build to the original's."""
    out = dict.fromkeys(STRUCTURE_NAMES, 0.0)
    for step in pipeline.structure.steps:
        if step.name == "none":
            continue
        out[f"has_{_key(step.name)}"] = 1.0
        out.update(step.features())
        if step.name == "lowrank":
            out["cover_factorize"] = 1.0
    if pipeline.is_structural:
        out["structure_params_ratio"] = out["structure_macs_ratio"] = 1.0
        if profile is not None and built is not None:
            out["structure_params_ratio"] = built.params / profile.params if profile.params else 1.0
            out["structure_macs_ratio"] = built.macs / profile.macs if profile.macs else 1.0
            lowrank = [st for st in pipeline.structure.steps if st.name == "lowrank"]
            if lowrank:
                from advisor.layers import select, weighted

                names = {ly.name for ly in built.layers if ly.name.endswith("_lr1")}
                chosen = select(profile, lowrank[0].layers)
                both = [ly for ly in weighted(profile) if ly.name in chosen and f"{ly.name}_lr1" in names]
                total = sum(ly.params for ly in weighted(profile)) or 1
                out["cover_factorize"] = sum(ly.params for ly in both) / total
    return out


@lru_cache(maxsize=4096)
def technique_vector(spec: str) -> np.ndarray:
    """The technique block of one spec as a read-only vector (cached per spec), every step taken
    as whole-model (see `pipeline_vectors` for layer-wise and structural plans)."""
    feats = technique_features(spec)
    vec = np.array([feats[n] for n in TECHNIQUE_NAMES], dtype=np.float64)
    vec.setflags(write=False)
    return vec


@lru_cache(maxsize=4096)
def _structure_default(spec: str) -> np.ndarray:
    vec = _vector(structure_features(Pipeline.parse(spec)), STRUCTURE_NAMES)
    vec.setflags(write=False)
    return vec


@lru_cache(maxsize=8192)
def needs_profile(spec: str) -> bool:
    """Whether a spec's features depend on the network (structural or layer-wise steps)."""
    return "@" in spec or Pipeline.parse(spec).is_structural


@lru_cache(maxsize=8192)
def pipeline_vectors(profile: ModelProfile, spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile, technique, structure) blocks of `spec` on `profile`: the profile block is that of
    the network the structural steps build (`advisor.layers.transform`), and layer-wise steps are
    featurised on it. Read-only vectors, cached per (profile, spec)."""
    pipeline = Pipeline.parse(spec)
    built, pv, sv = _built(profile, pipeline.structure.spec)
    tf = layerwise_features(built, pipeline) if pipeline.is_layerwise else technique_features(pipeline)
    tv = np.array([tf[n] for n in TECHNIQUE_NAMES], dtype=np.float64)
    tv.setflags(write=False)
    if pipeline.is_layerwise:
        _remember_plan((_block_key(pv), _technique_bytes(tv)), built, pipeline)
    return pv, tv, sv


#: Layer-wise plans featurised in this process, by (profile block key, technique block): the
#: network their steps act on and the plan, so that the per-layer speed-ups (`advisor.layer_costs`)
#: can give each layer the steps that take it rather than the plan's averages. Newest last; the
#: oldest are forgotten past `_PROFILES_KEPT`.
_PLANS: dict[tuple[str, bytes], tuple[ModelProfile, Pipeline]] = {}


def _technique_bytes(block: np.ndarray) -> bytes:
    return np.nan_to_num(np.ascontiguousarray(block, dtype=np.float64), nan=-1.0).tobytes()


def _remember_plan(key: tuple[str, bytes], built: ModelProfile, pipeline: Pipeline) -> None:
    if key in _PLANS:
        return
    if len(_PLANS) >= _PROFILES_KEPT:
        del _PLANS[next(iter(_PLANS))]
    _PLANS[key] = (built, pipeline)


def layerwise_plan_of(key: str, technique_block: np.ndarray) -> tuple[ModelProfile, Pipeline] | None:
    """The layer-wise plan behind a row (its profile block's key, its technique block) and the
    network its steps act on, if this process featurised it; None for any other row."""
    return _PLANS.get((key, _technique_bytes(technique_block)))


@lru_cache(maxsize=256)
def _built(profile: ModelProfile, structure: str) -> tuple[ModelProfile, np.ndarray, np.ndarray]:
    """The network a structure spec builds from `profile`, its profile block and structure block."""
    from advisor.layers import transform

    pipeline = Pipeline.parse(structure)
    built = transform(profile, pipeline) if pipeline.is_structural else profile
    pv = profile_vector(built)
    sv = _vector(structure_features(pipeline, profile, built), STRUCTURE_NAMES)
    for v in (pv, sv):
        v.setflags(write=False)
    return built, pv, sv


def built_profile(profile: ModelProfile, spec: str) -> ModelProfile:
    """The network `spec`'s structural steps build from `profile` (itself if it has none)."""
    return _built(profile, Pipeline.parse(spec).structure.spec)[0]


def _spec(pipeline: Pipeline | str) -> str:
    return pipeline.spec if isinstance(pipeline, Pipeline) else str(pipeline)


# ---------------------------------------------------------------------------------------------
# Device features.


def device_features(fp: Mapping[str, Any], threads: int) -> dict[str, float]:
    """The device block from a fingerprint (`collect_fingerprint()` or the fields a row keeps).

    A field the fingerprint lacks is NaN (unknown), not 0; `accelerator` present but None means
    "none". `isa_flags` None means unknown, so every ISA feature is NaN.
    """
    nan = float("nan")

    def num(key: str) -> float:
        value = fp.get(key)
        return float(value) if value is not None else nan

    logical = num("logical_cpus")
    memory = num("memory_bytes")
    out = {
        "threads": float(threads), "logical_cpus": logical, "physical_cores": num("physical_cores"),
        "thread_share": float(threads) / logical if logical == logical and logical > 0 else nan,
        "memory_gib": memory / 2**30 if memory == memory else nan,
        "accelerator": float(bool(fp.get("accelerator"))) if "accelerator" in fp else nan,
    }
    machine = fp.get("machine")
    for feature in ("arch_x86_64", "arch_aarch64", "arch_arm32"):
        out[feature] = nan if machine is None else float(ARCHES.get(str(machine).lower()) == feature)
    flags = fp.get("isa_flags")
    for flag in ISA_FEATURES:
        out[f"isa_{flag}"] = nan if flags is None else float(flag in flags)
    return out


def device_vector(fp: Mapping[str, Any], threads: int) -> np.ndarray:
    """The device block as a vector in `DEVICE_NAMES` order."""
    feats = device_features(fp, threads)
    return np.array([feats[n] for n in DEVICE_NAMES], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Assembly.


def _vector(feats: Mapping[str, float], names: tuple[str, ...]) -> np.ndarray:
    return np.array([feats.get(n, float("nan")) for n in names], dtype=np.float64)


def profile_vector(profile: ModelProfile) -> np.ndarray:
    """The profile block as a vector in `PROFILE_NAMES` order.

    The profile is remembered under the block's key (`profile_of`), so that a model of per-layer
    costs (`advisor.layer_costs`) can find a feature row's layers again."""
    v = _profile_block(profile).copy()
    _remember(_block_key(v), profile)
    return v


@lru_cache(maxsize=1024)
def _profile_block(profile: ModelProfile) -> np.ndarray:
    v = _vector(profile_features(profile), PROFILE_NAMES)
    v.setflags(write=False)
    return v


#: The profiles behind the profile blocks this process computed, by block key (`profile_keys`),
#: newest last; the oldest are forgotten past `_PROFILES_KEPT`. A row whose profile is not here
#: (built from totals only, or in another process) simply has no per-layer detail.
_PROFILES: dict[str, ModelProfile] = {}
_PROFILES_KEPT = 20_000


def _block_key(block: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(block, dtype=np.float64).tobytes(), digest_size=8).hexdigest()


def _remember(key: str, profile: ModelProfile) -> None:
    if key in _PROFILES:
        return
    if len(_PROFILES) >= _PROFILES_KEPT:
        del _PROFILES[next(iter(_PROFILES))]
    _PROFILES[key] = profile


def profile_of(key: str) -> ModelProfile | None:
    """The profile whose block has this key (`profile_keys`), if this process featurised it."""
    return _PROFILES.get(key)


def fill_derived(X: np.ndarray) -> np.ndarray:
    """Compute the derived columns of an assembled matrix in place; returns X.

    `param_bytes` is what the weights' values (and a recurrent loop's float sequence buffers,
    `LOOP_RECURRENT_LAYERS`) take in the .tflite file, layer type by layer type:
    BatchNorm parameters are folded away by the converter; dynamic-range quantization leaves
    tensors under 1,024 elements in float32; quantization-aware training leaves the layers it has
    no scheme for (`QAT_FLOAT_LAYERS`) in float32; a pruned pipeline that stays float is converted
    with sparse tensor encoding (`measure.compress`), which stores only the non-zero values of the
    kernels in `SPARSE_STORED_LAYERS` (everything else stays dense), each with its index and
    segment arrays (`_sparse_index`: 1, 2 or 4 bytes an entry, as the input channels and the
    non-zero count need; counted in `param_bytes`). `param_sparse` counts those non-zeros and
    `sparse_tensors` their tensors, for the prior to learn the per-tensor bookkeeping they cost (0
    for densely stored rows). Rows without per-layer detail (NaN profile columns) fall back to
    every weight at the pipeline's width and density.

    `channels_bias` counts the biases the file stores, one per output channel of a weighted layer
    (folded batch norms included). A network with random weights that nothing trained has zero
    biases, which the converter shares or drops (a 10% smaller file for a tiny network);
    `bias_tensors` counts the tensors they take when stored (each named after its fused operator:
    a trained 8-layer sampled network's float file is 22% larger than its random-weight one).
    """
    params = X[:, INDEX["params"]]
    small = np.nan_to_num(X[:, INDEX["params_small"]])
    bits = X[:, INDEX["eff_weight_bits"]]
    density = np.nan_to_num(X[:, INDEX["density"]], nan=1.0)
    dynamic = np.nan_to_num(X[:, INDEX["quant_dynamic"]]) > 0
    qat = np.nan_to_num(X[:, INDEX["quant_aware"]]) > 0
    sparse = (density < 1.0) & (np.nan_to_num(X[:, INDEX["weight_bits"]]) == 0) & ~qat
    weights = _weights(X)
    # A layer-wise prune covers a share of the weights at a higher sparsity than the average.
    cover = np.clip(np.nan_to_num(X[:, INDEX["cover_prune"]], nan=1.0), 0.0, 1.0)
    cover = np.where(cover > 0, cover, 1.0)
    covered_density = np.clip(1.0 - (1.0 - density) / cover, 0.0, 1.0)
    detail = np.isfinite(X[:, INDEX["params_sparse_stored"]])
    kernels = np.where(detail, np.minimum(np.nan_to_num(X[:, INDEX["params_sparse_stored"]]) * cover, weights), weights)
    kept = np.where(detail, covered_density, density)
    stays_float = np.where(dynamic, np.minimum(small, weights), 0.0)
    stays_float = np.where(qat, np.minimum(np.nan_to_num(X[:, INDEX["params_qat_float"]]), weights), stays_float)
    value_bytes = (weights - stays_float) * bits / 8.0 + stays_float * 4.0
    index_bytes = np.where(detail, _sparse_index_bytes(X, kept, cover), 0.0)
    exact = np.nan_to_num(X[:, INDEX["prune_index_bytes"]])
    index_bytes = np.where(detail & (exact > 0), exact, index_bytes)
    # A batch norm a layer-wise QAT leaves unfolded stores its scale and shift: 2 floats a channel.
    value_bytes = value_bytes + 2.0 * np.nan_to_num(X[:, INDEX["qat_bn_params"]])
    # A recurrent loop's sequence buffers are float constants, not weights: halved in a float16
    # file, float32 in every other measured one (`LOOP_RECURRENT_LAYERS`).
    half = np.nan_to_num(X[:, INDEX["quant_float16"]]) > 0
    value_bytes = value_bytes + np.where(half, 2.0, 4.0) * _loop_buffers(X)
    X[:, INDEX["param_bytes"]] = np.where(sparse, value_bytes - kernels * (1.0 - kept) * bits / 8.0 + index_bytes,
                                          value_bytes)
    # The tensors a plan adds to the graph: a QUANTIZE and a DEQUANTIZE output per layer a
    # layer-wise QAT takes, a MUL's and an ADD's constant and output per batch norm it unfolds.
    X[:, INDEX["plan_tensors"]] = (2.0 * np.nan_to_num(X[:, INDEX["qat_split_layers"]])
                                   + 4.0 * np.nan_to_num(X[:, INDEX["qat_unfolded_bn"]]))
    X[:, INDEX["param_nonzero"]] = params * density
    X[:, INDEX["param_sparse"]] = np.where(sparse, kernels * kept, 0.0)
    tensors = np.where(detail, np.nan_to_num(X[:, INDEX["n_sparse_stored"]]), 0.0)
    X[:, INDEX["sparse_tensors"]] = np.where(sparse, tensors, 0.0)
    trained = ~(np.nan_to_num(X[:, INDEX["weights_random"]]) > 0)
    trained |= np.nan_to_num(X[:, [INDEX[c] for c in TRAINING_STEPS]]).any(axis=1)
    X[:, INDEX["channels_bias"]] = np.where(trained, X[:, INDEX["channels_weighted"]], 0.0)
    # ... and each such bias is a tensor of its own, named after the fused operator it feeds (a
    # few hundred bytes of name each in a sampled network; see the docstring).
    X[:, INDEX["bias_tensors"]] = np.where(trained, X[:, INDEX["n_weighted"]], 0.0)
    # The float file's bytes beyond its weights, per TFLite tensor: names, shapes and operator
    # bookkeeping, which a quantized file repeats for each tensor it adds (a float16 file a
    # dequantize operator and tensor per weight).
    X[:, INDEX["float_file_excess"]] = ((X[:, INDEX["float_file_bytes"]] - 4.0 * (weights + _loop_buffers(X)))
                                        / _tensors(X))
    return X


def _sparse_index_bytes(X: np.ndarray, kept: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Per row, the index and segment bytes of its sparse-encoded kernels (`_sparse_index`) at
    kept share `kept` of the `cover` share of them; segments from the tabulated kept share
    nearest in log scale."""
    segments = np.column_stack([np.nan_to_num(X[:, INDEX[f"sparse_segments_{k:g}"]]) for k in SEGMENT_KEPT])
    nearest = np.argmin(np.abs(np.log(np.maximum(kept, 1e-6))[:, None] - np.log(np.array(SEGMENT_KEPT))), axis=1)
    chosen = segments[np.arange(len(X)), nearest]
    return (kept * np.nan_to_num(X[:, INDEX["sparse_index_full"]]) + chosen) * cover


def _blocks(profile: ModelProfile | np.ndarray, pv: np.ndarray, spec: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not needs_profile(spec):
        return pv, technique_vector(spec), _structure_default(spec)
    if isinstance(profile, np.ndarray):
        raise ValueError(f"'{spec}' is featurised on the network's layers: pass its ModelProfile, not a vector")
    return pipeline_vectors(profile, spec)


def feature_matrix(profile: ModelProfile | np.ndarray, pipelines: Sequence[Pipeline | str],
                   device_feats: Mapping[str, float] | np.ndarray) -> np.ndarray:
    """Feature rows for many candidate pipelines of one model on one device, shape (n, F).

    Args:
        profile: the network (or its `profile_vector`, to skip recomputing it, if no pipeline has
            structural or layer-wise steps).
        pipelines: `Pipeline` objects or spec strings.
        device_feats: `device_features(fp, threads)` (or its `device_vector`).

    Raises:
        SpecError: a malformed spec string.
    """
    pv = profile if isinstance(profile, np.ndarray) else profile_vector(profile)
    dv = device_feats if isinstance(device_feats, np.ndarray) else _vector(device_feats, DEVICE_NAMES)
    specs = [_spec(p) for p in pipelines]
    unique: dict[str, int] = {}
    index = np.fromiter((unique.setdefault(s, len(unique)) for s in specs), dtype=np.int64, count=len(specs))
    X = np.empty((len(specs), len(FEATURE_NAMES)), dtype=np.float64)
    X[:, DEVICE_BLOCK] = dv
    X[:, CONTEXT_BLOCK] = 0.0
    if not len(specs):
        return X
    blocks = [_blocks(profile, pv, s) for s in unique]
    if all(b[0] is pv for b in blocks):
        X[:, PROFILE_BLOCK] = pv
    else:
        X[:, PROFILE_BLOCK] = np.stack([b[0] for b in blocks])[index]
    X[:, TECHNIQUE_BLOCK] = np.stack([b[1] for b in blocks])[index]
    X[:, STRUCTURE_BLOCK] = np.stack([b[2] for b in blocks])[index]
    if isinstance(profile, ModelProfile):
        _float_file(X, profile.tflite_bytes, profile.tflite_weights == "random", pv)
    else:
        _float_file(X, None, False)
    return fill_derived(X)


#: The context columns about the row itself (not its network's file): what the accuracy booster reads.
_ROW_CONTEXT = np.array([INDEX["source_published"], INDEX["weights_random"]])


def _float_file(X: np.ndarray, file_bytes: float | None, random: bool, pv: np.ndarray | None = None) -> None:
    """Fill the float-file columns of rows X of one network (profile vector `pv`) whose converted
    float file has `file_bytes` (random or trained weights); NaN where it is unknown.

    A row whose structural steps build another network (a student, a factorised network) gets
    that network's float file as estimated from the original's. The built network is trained
    (its biases are not zero) and named and converted like the original, so its file holds its
    weights and biases at 4 bytes each plus, for each of its TFLite tensors, the original file's
    bytes per tensor beyond its weights (names, shapes, operator bookkeeping). From a trained
    file, the biases the file stores beyond the weights are those batch norms fold into (one a
    channel). A random-weight file stores no bias at all (the converter drops zero biases), so
    the built network adds one per weighted layer: a tensor and 4 bytes an output channel.
    Without `pv` such rows stay NaN.

    On the 182 measured structural rows without numeric steps (2026-12-06; nothing is fitted):
    within 5% of the converted file, from a trained file 78% (the weights-only estimate this
    replaces, and counting a bias tensor for the bias-free first half of a factorised layer) ->
    93% of 88, from a random one none (no estimate) -> 95% of 94."""
    X[:, INDEX["float_file_bytes"]] = np.nan
    X[:, INDEX["float_file_random"]] = np.nan
    if not file_bytes:
        return
    own = ~has_structure(X)
    X[own, INDEX["float_file_bytes"]] = float(file_bytes)
    X[own, INDEX["float_file_random"]] = float(random)
    built = ~own
    if pv is None or not built.any():
        return
    original = np.full((1, len(FEATURE_NAMES)), np.nan)
    original[0, PROFILE_BLOCK] = pv
    Xs = X[built]
    if random:
        biases_o = np.zeros(1)
        biases_b = np.nan_to_num(Xs[:, INDEX["channels_weighted"]])
        extra_tensors = np.nan_to_num(Xs[:, INDEX["n_weighted"]])
    else:
        biases_o, biases_b = _folded_biases(original), _folded_biases(Xs)
        extra_tensors = np.zeros(len(Xs))
    excess = (float(file_bytes) - 4.0 * (_weights(original) + biases_o)[0]) / _tensors(original)[0]
    X[built, INDEX["float_file_bytes"]] = (4.0 * (_weights(Xs) + biases_b)
                                           + max(excess, 0.0) * (_tensors(Xs) + extra_tensors))
    X[built, INDEX["float_file_random"]] = 0.0


def _folded_biases(X: np.ndarray) -> np.ndarray:
    """Per row, the bias values its batch norms fold into (one per channel: a quarter of their
    scale, shift, mean and variance)."""
    return np.nan_to_num(X[:, INDEX["params_folded"]]) / 4.0


def _weights(X: np.ndarray) -> np.ndarray:
    """Per row, the weights a float file stores (batch norms fold away)."""
    return np.maximum(X[:, INDEX["params"]] - np.nan_to_num(X[:, INDEX["params_folded"]]), 0.0)


def _loop_buffers(X: np.ndarray) -> np.ndarray:
    """Per row, the elements of its recurrent loops' sequence buffers (0 where unknown)."""
    return np.nan_to_num(X[:, INDEX["loop_buffers"]])


def _tensors(X: np.ndarray) -> np.ndarray:
    """Per row, the TFLite tensors of its float file (at least 1)."""
    return np.maximum(np.nan_to_num(X[:, INDEX["tflite_tensors"]]), 1.0)


def has_structure(X: np.ndarray) -> np.ndarray:
    """Per row: a structural step (distillation, factorisation) built another network."""
    return np.nan_to_num(X[:, _STRUCTURAL_HAS]).any(axis=1) if _STRUCTURAL_HAS.size else np.zeros(len(X), bool)


_STRUCTURAL_HAS = np.array([INDEX[f"has_{_key(cls.name)}"] for cls in TECHNIQUES if cls.structural], dtype=np.int64)


def as_baseline(X: np.ndarray) -> np.ndarray:
    """A copy of X with every row's numeric steps removed: the float network its structural steps
    built (the original network, for plans without any), uncompressed."""
    Xb = np.array(X, dtype=np.float64, copy=True)
    Xb[:, TECHNIQUE_BLOCK] = technique_vector("none")
    return fill_derived(Xb)


def technique_only(X: np.ndarray) -> np.ndarray:
    """X with every column outside the technique, structure and context blocks set to 0: what a
    booster that must not tell networks or devices apart reads (the accuracy change; see
    `advisor.predictor`). The context (`source_published`) stays: published rows are told apart."""
    out = _keeping(X, TECHNIQUE_BLOCK, STRUCTURE_BLOCK, _ROW_CONTEXT)
    out[:, _FILE_BOOKKEEPING] = 0.0
    return out


#: Technique columns that count a plan's file bytes and quantization parameters over the
#: network's layers (they scale with the network, not with what the technique does to it): the
#: size model's, not the accuracy change's.
_FILE_BOOKKEEPING = np.array([INDEX[c] for c in ("prune_index_bytes", "qat_weighted", "qat_channels",
                                                  "qat_channels_dense")])


def _keeping(X: np.ndarray, *columns: slice | np.ndarray) -> np.ndarray:
    """A copy of X with every column outside `columns` (blocks or index arrays) set to 0."""
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros_like(X)
    for c in columns:
        out[:, c] = X[:, c]
    return out


#: Columns that tell how a row's file stores its weights, not how fast it runs: the timing
#: boosters read them as 0 (a split on `weights_random` would send every trained network a user
#: brings down the branch of the few small networks the accuracy campaigns trained).
STORAGE_ONLY_NAMES = ("weights_random", "channels_bias", "bias_tensors", "float_file_bytes", "float_file_random",
                      "float_file_excess")
_STORAGE_ONLY = np.array([INDEX[n] for n in STORAGE_ONLY_NAMES])


def timing_only(X: np.ndarray) -> np.ndarray:
    """X with `STORAGE_ONLY_NAMES` set to 0: what the latency and power boosters read."""
    out = np.array(X, dtype=np.float64, copy=True)
    out[:, _STORAGE_ONLY] = 0.0
    return out


#: The profile columns a file's bytes follow from: parameters by layer group, what the converter
#: folds or leaves in float, weight tensors and their channels (quantization parameters), tensors
#: and operators (their bookkeeping). Held out by family (2026-12-05, 2,259 measured sizes), the
#: size boosters put 88.5% of sizes within 5% reading these, the technique, structure, context and
#: derived blocks; 85.7% reading every column (MAC and device columns let the trees tell the
#: training families apart, which helps no new one).
SIZE_PROFILE_NAMES = ("params", "params_folded", "params_small", "n_weighted", "channels_weighted",
                      "channels_dense", "channels_dynamic", "params_sparse_stored", "n_sparse_stored",
                      "params_qat_float", "loop_buffers", "tflite_ops", "tflite_tensors", "log_params",
                      "num_classes",
                      *(f"params_{g}" for g in GROUPS))
_SIZE_PROFILE = np.array([INDEX[n] for n in SIZE_PROFILE_NAMES])


def size_only(X: np.ndarray) -> np.ndarray:
    """X with every column but `SIZE_PROFILE_NAMES` and the technique, structure, context and
    derived blocks set to 0: what the size boosters read."""
    return _keeping(X, TECHNIQUE_BLOCK, STRUCTURE_BLOCK, CONTEXT_BLOCK, DERIVED_BLOCK, _SIZE_PROFILE)


def profile_keys(X: np.ndarray) -> np.ndarray:
    """Per row, a short hash of its profile block: equal networks (same profile), equal keys."""
    block = np.ascontiguousarray(X[:, PROFILE_BLOCK], dtype=np.float64)
    if len(block) == 0:
        return np.zeros(0, dtype=object)
    if np.array_equal(block, np.broadcast_to(block[0], block.shape), equal_nan=True):
        return np.full(len(block), _block_key(block[0]), dtype=object)
    rows = block.view(np.dtype((np.void, block.itemsize * block.shape[1]))).ravel()
    unique, inverse = np.unique(rows, return_inverse=True)
    keys = np.array([hashlib.blake2b(u.tobytes(), digest_size=8).hexdigest() for u in unique], dtype=object)
    return keys[inverse.ravel()]


def is_baseline(X: np.ndarray) -> np.ndarray:
    """Per row: no numeric steps (a float network: the original, or one structural steps built).
    What the latency of such a row is predicted from is its profile alone."""
    return X[:, INDEX["n_steps"]] == 0


def is_original(X: np.ndarray) -> np.ndarray:
    """Per row: the original network, uncompressed (no step at all): its accuracy change is 0."""
    return is_baseline(X) & ~np.any(np.nan_to_num(X[:, STRUCTURE_BLOCK]) != 0, axis=1)


# ---------------------------------------------------------------------------------------------
# Measurement rows.

#: Row columns that describe the device, as a partial fingerprint.
ROW_DEVICE_FIELDS = ("logical_cpus", "machine", "accelerator")


def plain_value(value: Any) -> Any:
    """A DataFrame cell as a plain value, with every kind of missing as None."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        return value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value.item() if isinstance(value, np.generic) else value


def row_fingerprint(row: Mapping[str, Any], fingerprints: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> dict[str, Any]:
    """The fingerprint a measurement row implies: the full one if `fingerprints` holds its
    `fingerprint_id`, else the fields the row keeps (ISA flags, cores and memory unknown)."""
    fid = plain_value(row.get("fingerprint_id"))
    if fingerprints and fid in fingerprints:
        return dict(fingerprints[fid])
    return {k: plain_value(row.get(k)) for k in ROW_DEVICE_FIELDS}


def float_files(rows: Any) -> dict[tuple[str, bool], float]:
    """(profile digest, random weights) -> the float file's bytes, from the measured uncompressed
    rows (technique "none", status ok): what profiling the network would have converted."""
    out: dict[tuple[str, bool], float] = {}
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    for r in records:
        size = plain_value(r.get("size_bytes"))
        if (plain_value(r.get("technique")) == "none" and plain_value(r.get("status")) in (None, "ok")
                and size is not None and size == size and size > 0 and plain_value(r.get("profile_digest"))):
            out.setdefault((str(r["profile_digest"]), plain_value(r.get("weights")) == "random"), float(size))
    return out


def rows_matrix(rows: Any, profiles: Mapping[str, ModelProfile],
                fingerprints: Mapping[str, Mapping[str, Any]] | None = None,
                files: Mapping[tuple[str, bool], float] | None = None) -> np.ndarray:
    """Feature rows for measurement rows (a DataFrame in the store's schema), shape (n, F).

    Each distinct profile, technique and device is featurised once. A row whose
    `profile_digest` is not in `profiles` gets only its total MACs and parameters. The float-file
    columns come from the profile where it records its file, else from `files` (default:
    `float_files(rows)`), the same weights first.
    """
    n = len(rows)
    X = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return X
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    files = float_files(records) if files is None else files
    cache: dict[tuple, np.ndarray] = {}

    def cached(key: tuple, make: Any) -> np.ndarray:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    for i, r in enumerate(records):
        digest = plain_value(r.get("profile_digest"))
        prof = profiles.get(digest) if digest is not None else None
        if prof is not None:
            X[i, PROFILE_BLOCK] = cached(("p", digest), lambda p=prof: profile_vector(p))
        else:
            key = ("q", plain_value(r.get("macs")), plain_value(r.get("params")), plain_value(r.get("input_size")),
                   plain_value(r.get("domain")))
            X[i, PROFILE_BLOCK] = cached(key, lambda k=key: _vector(partial_profile_features(*k[1:]),
                                                                   PROFILE_NAMES))
        spec = str(r.get("technique") or "none")
        if prof is not None and needs_profile(spec):
            X[i, PROFILE_BLOCK], X[i, TECHNIQUE_BLOCK], X[i, STRUCTURE_BLOCK] = pipeline_vectors(prof, spec)
        else:
            X[i, TECHNIQUE_BLOCK] = technique_vector(spec)
            X[i, STRUCTURE_BLOCK] = _structure_default(spec)
        fp = row_fingerprint(r, fingerprints)
        threads = plain_value(r.get("threads")) or 1
        dkey = ("d", plain_value(r.get("fingerprint_id")), tuple(sorted((k, str(v)) for k, v in fp.items())), threads)
        X[i, DEVICE_BLOCK] = cached(dkey, lambda f=fp, t=threads: device_vector(f, int(t)))
        X[i, INDEX["source_published"]] = float(plain_value(r.get("source")) == "published")
        X[i, INDEX["weights_random"]] = float(plain_value(r.get("weights")) == "random")
        file: tuple[float | None, bool] = (None, False)
        if prof is not None and prof.tflite_bytes:
            file = (prof.tflite_bytes, prof.tflite_weights == "random")
        elif digest is not None:
            random = plain_value(r.get("weights")) == "random"
            kind = next((k for k in (random, not random) if (str(digest), k) in files), None)
            file = (files[(str(digest), kind)], kind) if kind is not None else file
        original = cached(("p", digest), lambda p=prof: profile_vector(p)) if prof is not None else None
        _float_file(X[i:i + 1], *file, original)  # a view: writes through
    return fill_derived(X)
