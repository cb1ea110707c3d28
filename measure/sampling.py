"""Sampled architectures: many more shapes than the named networks, the way nn-Meter and HELP
sample their model spaces.

An architecture is an `ArchSpec`: a block type and every choice that shapes the network (depth,
widths, kernels, where it downsamples, input, classes). `sample_arch(block, seed)` draws each
choice from one seeded `random.Random`, so a name such as `sampled:residual:17` stands for one
network forever, and `build_arch(spec)` turns a spec into a Keras model with one builder per
block type. The family of a sampled network is `sampled-<block>`, so a predictor's family split
can hold out a whole block type.

Importing this module imports neither TensorFlow nor `measure.loading`; `build_arch` and
`resolve_sampled` do.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import OptionError, UnknownNameError
from measure.text import TEXT_VOCAB_SIZE

PREFIX = "sampled"
FAMILY_PREFIX = "sampled-"
MIN_WIDTH = 8

_NAME = re.compile(r"sampled:(?P<block>[^:]*):(?P<seed>[^:]*)")


@dataclass(frozen=True)
class SampleLimits:
    """Upper bounds on what `sample_arch` may draw (tests shrink them to get tiny networks).

    Choices above a bound are removed before drawing, so changing the limits changes the spec a
    seed gives: the canonical `sampled:<block>:<seed>` names always use `DEFAULT_LIMITS`.
    """

    max_input_size: int = 224
    max_seq_len: int = 256
    max_width: int = 256
    max_depth: int = 16


DEFAULT_LIMITS = SampleLimits()


@dataclass(frozen=True)
class ArchSpec:
    """Everything that shapes one sampled network.

    Widths grow by `width_growth` per stage: for convolutional blocks a stage ends at each
    stride-2 block; for dense and recurrent blocks every layer is a stage (growth below 1 makes
    a funnel); attention keeps one width (the residual stream cannot change size).
    """

    block: str
    seed: int
    depth: int  # number of blocks (conv blocks, dense layers, recurrent layers, encoder blocks)
    base_width: int  # channels of the stem, units of the first layer, or the model dimension
    width_growth: float
    input_size: int  # image side in pixels, or sequence length in tokens
    num_classes: int
    kernel_sizes: tuple[int, ...] = ()  # per block, convolutional blocks only
    strides: tuple[int, ...] = ()  # per block (1 or 2), convolutional blocks only
    stem_stride: int | None = None  # convolutional blocks only
    input_channels: int | None = None  # image blocks only
    expansion: int | None = None  # inverted-residual expansion, or attention FFN ratio
    heads: int | None = None  # attention only
    embed_dim: int | None = None  # text blocks only
    vocab_size: int | None = None  # text blocks only
    width_cap: int = 256  # growth stops here
    op: str | None = None  # the probed operation, for probes that draw one (`ELTWISE_OPS`, `SEQUENCE_OPS`)
    groups: int | None = None  # a grouped convolution probe's groups

    def __post_init__(self) -> None:
        kind = _kind(self.block)
        if self.depth < 1 or self.base_width < 1 or self.num_classes < 1 or self.input_size < 1:
            raise OptionError(f"sampled architecture {self.block}: depth, width, input size and classes "
                              f"must be positive (got {self})")
        if kind.convolutional and not (len(self.kernel_sizes) == len(self.strides) == self.depth):
            raise OptionError(f"sampled architecture {self.block}: kernel_sizes and strides need one "
                              f"entry per block ({self.depth}), got {self.kernel_sizes} and {self.strides}")

    @property
    def name(self) -> str:
        """The canonical name, `sampled:<block>:<seed>` (meaningful for default-limit specs)."""
        return sampled_name(self.block, self.seed)

    @property
    def family(self) -> str:
        return FAMILY_PREFIX + self.block

    @property
    def domain(self) -> str:
        return _kind(self.block).domain

    @property
    def widths(self) -> tuple[int, ...]:
        """The width of each block after growth, within [8, `width_cap`]."""
        if self.strides:
            stages = [sum(1 for s in self.strides[: i + 1] if s > 1) for i in range(self.depth)]
        else:
            stages = list(range(self.depth))
        return tuple(max(MIN_WIDTH, min(self.width_cap, int(round(self.base_width * self.width_growth ** s))))
                     for s in stages)

    def summary(self) -> str:
        """One line describing the architecture (stored in the rows' notes)."""
        if self.domain == "text":
            shape = f"tokens {self.input_size} (vocab {self.vocab_size}, embed {self.embed_dim})"
        elif self.domain == "audio":
            shape = f"signal {self.input_size}x{self.input_channels}"
        else:
            shape = f"{self.input_size}x{self.input_size}x{self.input_channels}"
        parts = [f"{self.name}: {self.depth} {self.block} blocks", f"widths {list(self.widths)}", f"input {shape}"]
        if self.kernel_sizes:
            parts.append(f"kernels {list(self.kernel_sizes)}")
            parts.append(f"strides {list(self.strides)} after a stride-{self.stem_stride} stem")
        if self.expansion is not None:
            parts.append(f"expansion {self.expansion}")
        if self.heads is not None:
            parts.append(f"{self.heads} heads")
        if self.op is not None:
            parts.append(f"op {self.op}")
        if self.groups is not None:
            parts.append(f"{self.groups} groups")
        parts.append(f"{self.num_classes} classes")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Drawing choices


def _pick(rng: random.Random, options: Sequence[int], weights: Sequence[float], limit: int | None = None) -> int:
    """One weighted choice among the options not above `limit` (the smallest if none is)."""
    allowed = [(o, w) for o, w in zip(options, weights) if limit is None or o <= limit]
    if not allowed:
        return min(options)
    values, kept = zip(*allowed)
    return rng.choices(values, kept)[0]


# Biased toward small inputs and widths so that building and converting stay cheap.
IMAGE_SIZES = (32, 48, 64, 96, 128, 160, 192, 224)
_IMAGE_SIZE_WEIGHTS = (8, 6, 6, 5, 3, 2, 1, 1)
MLP_SIZES = (8, 12, 16, 24, 28, 32)
_MLP_SIZE_WEIGHTS = (2, 2, 3, 3, 2, 2)
SEQ_LENS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
_SEQ_LEN_WEIGHTS = (4, 3, 5, 3, 4, 2, 2, 1, 1)
_CONV_WIDTHS = (8, 16, 24, 32, 48, 64)
_CONV_WIDTH_WEIGHTS = (3, 4, 3, 3, 2, 2)
_GROWTHS = (1.0, 1.25, 1.5, 2.0)
_KERNELS = (3, 5, 7)
_KERNEL_WEIGHTS = (6, 3, 1)
_IMAGE_CLASSES = (10, 100, 1000)
_TEXT_CLASSES = (2, 5, 20)
# Per-pixel work budget: the stem width is capped near 6144 / input side, so a 224-pixel input
# starts at most 24 channels wide and no sample costs many GMACs.
_STEM_BUDGET = 6144


def _sample_conv(block: str, max_depth: int) -> Callable[[random.Random, SampleLimits], dict[str, Any]]:
    def sample(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
        size = _pick(rng, IMAGE_SIZES, _IMAGE_SIZE_WEIGHTS, limits.max_input_size)
        channels = rng.choices((1, 3), (1, 3))[0]
        depth = rng.randint(min(2, limits.max_depth), min(max_depth, limits.max_depth))
        width = _pick(rng, _CONV_WIDTHS, _CONV_WIDTH_WEIGHTS,
                      min(limits.max_width, max(16, _STEM_BUDGET // size)))
        growth = rng.choice(_GROWTHS)
        stem_stride = 2 if size >= 96 else rng.choice((1, 2))
        # Downsample at most until a 2x2 map is left.
        max_down = min(depth, max(0, int(math.log2(math.ceil(size / stem_stride) / 2))))
        n_down = rng.randint(min(1, max_down), max_down)
        down = set(rng.sample(range(depth), n_down))
        out: dict[str, Any] = {
            "input_size": size, "input_channels": channels, "depth": depth, "base_width": width,
            "width_growth": growth, "stem_stride": stem_stride,
            "strides": tuple(2 if i in down else 1 for i in range(depth)),
            "kernel_sizes": tuple(rng.choices(_KERNELS, _KERNEL_WEIGHTS)[0] for _ in range(depth)),
            "num_classes": rng.choices(_IMAGE_CLASSES, (5, 3, 2))[0],
        }
        if block == "inverted_residual":
            out["expansion"] = rng.choice((1, 2, 3, 4, 6))
        return out

    return sample


def _sample_dense(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    return {
        "input_size": _pick(rng, MLP_SIZES, _MLP_SIZE_WEIGHTS, limits.max_input_size),
        "input_channels": rng.choices((1, 3), (1, 1))[0],
        "depth": rng.randint(min(2, limits.max_depth), min(8, limits.max_depth)),
        "base_width": _pick(rng, (16, 32, 64, 128, 256), (2, 3, 3, 2, 1), limits.max_width),
        "width_growth": rng.choice((0.5, 0.75, 1.0)),
        "num_classes": rng.choices(_IMAGE_CLASSES, (5, 3, 2))[0],
    }


def _sample_recurrent(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    return {
        "input_size": _pick(rng, SEQ_LENS, _SEQ_LEN_WEIGHTS, limits.max_seq_len),
        "depth": rng.randint(1, min(3, limits.max_depth)),
        "embed_dim": _pick(rng, (16, 32, 64, 128), (2, 3, 3, 1), limits.max_width),
        "base_width": _pick(rng, (8, 16, 32, 64, 128, 256), (1, 2, 3, 3, 2, 1), limits.max_width),
        "width_growth": rng.choice((0.5, 1.0)),
        "vocab_size": TEXT_VOCAB_SIZE,
        "num_classes": rng.choice(_TEXT_CLASSES),
    }


def _sample_attention(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    d_model = _pick(rng, (16, 32, 64, 128, 256), (2, 3, 3, 2, 1), limits.max_width)
    # Heads that leave each at least 8 dimensions.
    heads = rng.choice([h for h in (1, 2, 4, 8) if d_model // h >= 8])
    return {
        "input_size": _pick(rng, SEQ_LENS, _SEQ_LEN_WEIGHTS, limits.max_seq_len),
        "depth": rng.randint(1, min(6, limits.max_depth)),
        "base_width": d_model, "embed_dim": d_model, "width_growth": 1.0, "heads": heads,
        "expansion": rng.choice((1, 2, 4)),
        "vocab_size": TEXT_VOCAB_SIZE,
        "num_classes": rng.choice(_TEXT_CLASSES),
    }


# Kernel probes: one layer between an input and a small classifier, the way nn-Meter measures
# kernels. Channels, spatial size, kernel and stride are drawn over the ranges real networks use,
# so that the per-layer costs a predictor learns from whole networks are pinned down layer by layer.
_PROBE_SIZES = (4, 7, 8, 14, 16, 28, 32, 56, 64, 112)
_PROBE_SIZE_WEIGHTS = (2, 3, 2, 3, 2, 3, 2, 2, 1, 1)
_PROBE_CHANNELS = (3, 8, 12, 16, 20, 24, 32, 40, 48, 64, 72, 96, 128, 160, 192, 256, 384, 512, 768, 1024)
#: At most this many MACs per probe, so that converting and timing one stays around a second.
_PROBE_MAC_BUDGET = 150_000_000


def _sample_conv_probe(depthwise: bool) -> Callable[[random.Random, SampleLimits], dict[str, Any]]:
    def sample(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
        size = _pick(rng, _PROBE_SIZES, _PROBE_SIZE_WEIGHTS, limits.max_input_size)
        kernel = rng.choices((1, 3, 5, 7), (0 if depthwise else 4, 6, 2, 1))[0]
        stride = rng.choices((1, 2), (3, 1))[0] if size >= 8 else 1
        cin = rng.choice([c for c in _PROBE_CHANNELS if c <= limits.max_width * 4] or [8])
        cout = cin if depthwise else rng.choice([c for c in _PROBE_CHANNELS if c <= limits.max_width * 4] or [8])
        out_side = -(-size // stride)
        per_channel = out_side * out_side * kernel * kernel * (1 if depthwise else cin)
        while cout > 8 and per_channel * cout > _PROBE_MAC_BUDGET:  # shrink the widest choice
            cout //= 2
            cin = cout if depthwise else cin
            per_channel = out_side * out_side * kernel * kernel * (1 if depthwise else cin)
        return {"input_size": size, "input_channels": cin, "depth": 1, "base_width": cout, "width_growth": 1.0,
                "stem_stride": 1, "strides": (stride,), "kernel_sizes": (kernel,), "num_classes": 10,
                "width_cap": max(cout, MIN_WIDTH)}

    return sample


def _sample_dense_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    inputs = [c for c in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if c <= limits.max_width * 16] or [16]
    units = [c for c in (8, 16, 32, 64, 100, 128, 256, 512, 1000, 1024, 2048) if c <= limits.max_width * 8] or [8]
    return {"input_size": 1, "input_channels": rng.choice(inputs), "depth": 1, "base_width": rng.choice(units),
            "width_growth": 1.0, "num_classes": 10, "width_cap": 4096}


#: Text probes: a sequence layer at most this many MACs, so that a probe converts and times in seconds.
_SEQ_PROBE_MAC_BUDGET = 60_000_000
_SEQ_PROBE_WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def _sample_recurrent_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    length = _pick(rng, SEQ_LENS, _SEQ_LEN_WEIGHTS, limits.max_seq_len)
    widths = [w for w in _SEQ_PROBE_WIDTHS if w <= limits.max_width * 2] or [8]
    embed, units = rng.choice(widths), rng.choice(widths)
    while units > 8 and length * 4 * (embed + units) * units > _SEQ_PROBE_MAC_BUDGET:
        units //= 2
    return {"input_size": length, "depth": 1, "embed_dim": embed, "base_width": units, "width_growth": 1.0,
            "vocab_size": TEXT_VOCAB_SIZE, "num_classes": 10, "width_cap": 512,
            "op": rng.choice(("last", "sequence"))}


def _sample_attention_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    length = _pick(rng, SEQ_LENS, _SEQ_LEN_WEIGHTS, limits.max_seq_len)
    d_model = rng.choice([w for w in _SEQ_PROBE_WIDTHS if 16 <= w <= limits.max_width * 2] or [16])
    heads = rng.choice([h for h in (1, 2, 4, 8, 12) if d_model // h >= 8 and d_model % h == 0])
    # Projections (4 d^2 per token) and scores (2 d per token pair).
    while d_model > 16 and length * (4 * d_model * d_model + 2 * length * d_model) > _SEQ_PROBE_MAC_BUDGET:
        d_model //= 2
        heads = max(1, min(heads, d_model // 8))
    return {"input_size": length, "depth": 1, "embed_dim": d_model, "base_width": d_model, "width_growth": 1.0,
            "heads": heads, "vocab_size": TEXT_VOCAB_SIZE, "num_classes": 10, "width_cap": 512}


def _sample_sequence_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    length = _pick(rng, SEQ_LENS, _SEQ_LEN_WEIGHTS, limits.max_seq_len)
    widths = [w for w in _SEQ_PROBE_WIDTHS if w <= limits.max_width * 2] or [8]
    op = rng.choice(SEQUENCE_OPS)
    embed = rng.choice(widths)
    units = rng.choice([w for w in (*widths, 1024, 2048) if w <= limits.max_width * 8]) if op == "dense" else embed
    while units > 8 and length * embed * units > _SEQ_PROBE_MAC_BUDGET:
        units //= 2
    return {"input_size": length, "depth": 1, "embed_dim": embed, "base_width": units, "width_growth": 1.0,
            "vocab_size": TEXT_VOCAB_SIZE, "num_classes": 10, "width_cap": 2048, "op": op}


def _sample_eltwise_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    size = _pick(rng, _PROBE_SIZES, _PROBE_SIZE_WEIGHTS, limits.max_input_size)
    widths = [c for c in _PROBE_CHANNELS if c <= limits.max_width * 4] or [8]
    # Tensors of 16 k to 2 M elements: smaller ones time as the invoke's fixed cost and nothing else.
    channels = rng.choice([c for c in widths if 16_384 <= size * size * c <= 2_000_000] or [widths[-1]])
    while channels > 8 and size * size * channels > 2_000_000:
        channels //= 2
    op = rng.choice(ELTWISE_OPS)
    pooled = op in ("max_pool", "avg_pool")
    return {"input_size": size, "input_channels": channels, "depth": 1, "base_width": channels,
            "width_growth": 1.0, "stem_stride": 1, "strides": (rng.choice((1, 2)) if pooled and size >= 8 else 1,),
            "kernel_sizes": (rng.choice((2, 3)) if pooled else 1,), "num_classes": 10,
            "width_cap": max(channels, MIN_WIDTH), "op": op}


#: Resampling and grouped-convolution probes (`RESAMPLE_OPS`): the layers of segmentation and
#: detection heads (U-Net, FPN: transposed convolutions, nearest and bilinear up-sampling) and of
#: ResNeXt-style blocks, which no sampled network and no zoo network holds.
_RESAMPLE_GROUPS = (2, 4, 8, 16, 32)


def _sample_resample_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    op = rng.choice(RESAMPLE_OPS)
    size = _pick(rng, _PROBE_SIZES, _PROBE_SIZE_WEIGHTS, limits.max_input_size)
    widths = [c for c in _PROBE_CHANNELS if c <= limits.max_width * 4] or [8]
    drawn: dict[str, Any] = {"input_size": size, "depth": 1, "width_growth": 1.0, "stem_stride": 1,
                             "num_classes": 10, "op": op}
    if op.startswith("upsample"):
        # An output of 16 k to 2 M elements (four times the input's).
        channels = rng.choice([c for c in widths if 4_096 <= size * size * c <= 500_000] or [widths[0]])
        while channels > 8 and size * size * channels > 500_000:
            channels //= 2
        return {**drawn, "input_channels": channels, "base_width": channels, "strides": (2,), "kernel_sizes": (1,),
                "width_cap": max(channels, MIN_WIDTH)}
    cin, cout = rng.choice(widths), rng.choice(widths)
    if op == "transpose_conv":
        kernel, stride, groups = rng.choice((2, 3, 4)), 2, 1
    else:
        kernel, stride = rng.choices((1, 3), (1, 3))[0], rng.choices((1, 2), (3, 1))[0] if size >= 8 else 1
        groups = rng.choice([g for g in _RESAMPLE_GROUPS if cin % g == 0 and cout % g == 0 and cin // g >= 2] or [2])
        cin, cout = max(cin, 2 * groups), max(cout, 2 * groups)
    positions = size * size if op == "transpose_conv" else (-(-size // stride)) ** 2
    while cout > 8 and positions * kernel * kernel * cin // groups * cout > _PROBE_MAC_BUDGET:
        cout //= 2
        cin = cout if cin > cout else cin
    if op == "grouped_conv":  # the largest drawn-from group count that still divides both
        groups = max(g for g in (1, *_RESAMPLE_GROUPS) if g <= groups and cin % g == 0 and cout % g == 0)
    return {**drawn, "input_channels": cin, "base_width": cout, "strides": (stride,), "kernel_sizes": (kernel,),
            "groups": groups, "width_cap": max(cout, MIN_WIDTH)}


#: 1-D convolution probes: keyword spotting, audio and time-series networks convolve a signal.
_SIGNAL_LENGTHS = (128, 256, 500, 1000, 2000, 4000, 8000, 16000)
_SIGNAL_CHANNELS = (1, 2, 8, 16, 32, 40, 64, 128, 256)


def _sample_conv1d_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    length = rng.choice(_SIGNAL_LENGTHS)
    cin = rng.choice(_SIGNAL_CHANNELS)
    cout = rng.choice([c for c in _PROBE_CHANNELS if 8 <= c <= limits.max_width * 2] or [8])
    kernel, stride = rng.choice((3, 5, 9, 15)), rng.choices((1, 2, 4), (3, 2, 1))[0]
    while cout > 8 and -(-length // stride) * kernel * cin * cout > _PROBE_MAC_BUDGET:
        cout //= 2
    return {"input_size": length, "input_channels": cin, "depth": 1, "base_width": cout, "width_growth": 1.0,
            "stem_stride": 1, "strides": (stride,), "kernel_sizes": (kernel,), "num_classes": 10,
            "width_cap": max(cout, MIN_WIDTH)}


def _sample_activation_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    """An element-wise draw (16 k to 2 M elements) for one of `ACTIVATION_OPS`."""
    drawn = _sample_eltwise_probe(rng, limits)
    return {**drawn, "strides": (1,), "kernel_sizes": (1,), "op": rng.choice(ACTIVATION_OPS)}


def _sample_separable_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    """One separable convolution (a depthwise and a 1x1 convolution); its input may have 3
    channels (a network's first layer), its output at least 8."""
    size = _pick(rng, _PROBE_SIZES, _PROBE_SIZE_WEIGHTS, limits.max_input_size)
    kernel, stride = rng.choices((3, 5, 7), (6, 2, 1))[0], rng.choices((1, 2), (3, 1))[0] if size >= 8 else 1
    widths = [c for c in _PROBE_CHANNELS if c <= limits.max_width * 4] or [8]
    cin, cout = rng.choice(widths), rng.choice([c for c in widths if c >= MIN_WIDTH] or [MIN_WIDTH])
    side = -(-size // stride)
    while max(cin, cout) > MIN_WIDTH and side * side * cin * (kernel * kernel + cout) > _PROBE_MAC_BUDGET:
        if cout >= cin:  # halve the wider side
            cout //= 2
        else:
            cin //= 2
    return {"input_size": size, "input_channels": cin, "depth": 1, "base_width": cout, "width_growth": 1.0,
            "stem_stride": 1, "strides": (stride,), "kernel_sizes": (kernel,), "num_classes": 10,
            "width_cap": max(cout, MIN_WIDTH)}


#: Grouped-convolution probes: ResNeXt (32 groups of 4 channels), RegNet (groups of 8 to 64) and
#: ShuffleNet (1x1 convolutions in 2 to 8 groups). The resampling probes drew few such layers
#: (widths must divide by the groups: 3 of 120 had 16 or more).
_GROUP_COUNTS = (2, 4, 8, 16, 32, 64)
_GROUP_WIDTHS = (2, 4, 8, 16, 32, 64)


def _sample_grouped_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    """One grouped convolution: groups, and channels per group in and out, drawn on their own."""
    size = _pick(rng, _PROBE_SIZES, _PROBE_SIZE_WEIGHTS, limits.max_input_size)
    groups = rng.choice(_GROUP_COUNTS)
    width_in, width_out = rng.choice(_GROUP_WIDTHS), rng.choice(_GROUP_WIDTHS)
    kernel, stride = rng.choices((1, 3), (1, 3))[0], rng.choices((1, 2), (3, 1))[0] if size >= 8 else 1
    side = -(-size // stride)
    while max(width_in, width_out) > 2 and (groups * max(width_in, width_out) > max(limits.max_width * 4, 16)
                                            or side * side * kernel * kernel * groups * width_in * width_out
                                            > _PROBE_MAC_BUDGET):
        if width_out >= width_in:
            width_out //= 2
        else:
            width_in //= 2
    return {"input_size": size, "input_channels": groups * width_in, "depth": 1,
            "base_width": max(groups * width_out, MIN_WIDTH), "width_growth": 1.0, "stem_stride": 1,
            "strides": (stride,), "kernel_sizes": (kernel,), "groups": groups, "num_classes": 10,
            "width_cap": max(groups * width_out, MIN_WIDTH), "op": "grouped_conv"}


# ---------------------------------------------------------------------------------------------
# Building


def _conv_bn_relu(keras: Any, x: Any, filters: int, kernel: int, stride: int, name: str,
                  relu: bool = True) -> Any:
    layers = keras.layers
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _image_input(keras: Any, spec: ArchSpec) -> Any:
    return keras.Input(shape=(spec.input_size, spec.input_size, spec.input_channels), name="image")


def _classifier_2d(keras: Any, x: Any, spec: ArchSpec, inputs: Any) -> Any:
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, out, name=f"sampled_{spec.block}_{spec.seed}")


def _conv_body(block_fn: Callable[..., Any]) -> Callable[[Any, ArchSpec], Any]:
    """A builder: stem, then `block_fn(keras, x, width, kernel, stride, name)` per block, then a classifier."""

    def build(keras: Any, spec: ArchSpec) -> Any:
        inputs = _image_input(keras, spec)
        x = _conv_bn_relu(keras, inputs, spec.base_width, 3, spec.stem_stride or 1, "stem")
        for i, (width, kernel, stride) in enumerate(zip(spec.widths, spec.kernel_sizes, spec.strides)):
            x = block_fn(keras, x, width, kernel, stride, f"block{i}", spec)
        return _classifier_2d(keras, x, spec, inputs)

    return build


def _plain_block(keras: Any, x: Any, width: int, kernel: int, stride: int, name: str, spec: ArchSpec) -> Any:
    return _conv_bn_relu(keras, x, width, kernel, stride, name)


def _residual_block(keras: Any, x: Any, width: int, kernel: int, stride: int, name: str, spec: ArchSpec) -> Any:
    layers = keras.layers
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != width:
        shortcut = _conv_bn_relu(keras, x, width, 1, stride, f"{name}_proj", relu=False)
    y = _conv_bn_relu(keras, x, width, kernel, stride, f"{name}_a")
    y = _conv_bn_relu(keras, y, width, kernel, 1, f"{name}_b", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _inverted_residual_block(keras: Any, x: Any, width: int, kernel: int, stride: int, name: str,
                             spec: ArchSpec) -> Any:
    layers = keras.layers
    channels = int(x.shape[-1])
    y = x
    if (spec.expansion or 1) > 1:
        y = layers.Conv2D(channels * spec.expansion, 1, use_bias=False, name=f"{name}_expand")(y)
        y = layers.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
    y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)  # linear bottleneck: no activation
    if stride == 1 and channels == width:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def _depthwise_separable_block(keras: Any, x: Any, width: int, kernel: int, stride: int, name: str,
                               spec: ArchSpec) -> Any:
    layers = keras.layers
    y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = layers.ReLU(name=f"{name}_dw_relu")(y)
    return _conv_bn_relu(keras, y, width, 1, 1, f"{name}_pw")


def _build_conv_probe(keras: Any, spec: ArchSpec) -> Any:
    inputs = _image_input(keras, spec)
    x = _conv_bn_relu(keras, inputs, spec.base_width, spec.kernel_sizes[0], spec.strides[0], "probe")
    return _classifier_2d(keras, x, spec, inputs)


def _probed_depthwise(keras: Any, x: Any, spec: ArchSpec) -> Any:
    """The probed depthwise layer (with its batch norm and ReLU6), alone or inside a network."""
    layers = keras.layers
    x = layers.DepthwiseConv2D(spec.kernel_sizes[0], strides=spec.strides[0], padding="same", use_bias=False,
                               name="probe_dw")(x)
    x = layers.BatchNormalization(name="probe_bn")(x)
    return layers.ReLU(6.0, name="probe_relu")(x)


def _build_depthwise_probe(keras: Any, spec: ArchSpec) -> Any:
    inputs = _image_input(keras, spec)
    return _classifier_2d(keras, _probed_depthwise(keras, inputs, spec), spec, inputs)


def _sample_inner_depthwise_probe(rng: random.Random, limits: SampleLimits) -> dict[str, Any]:
    """A depthwise probe's draw, its channels halved while the two pointwise convolutions around it
    would pass the MAC budget."""
    drawn = _sample_conv_probe(True)(rng, limits)
    side = -(-drawn["input_size"] // drawn["strides"][0])
    while drawn["base_width"] > 8 and drawn["input_size"] ** 2 * drawn["base_width"] ** 2 + \
            side * side * drawn["base_width"] ** 2 > _PROBE_MAC_BUDGET:
        drawn["base_width"] //= 2
        drawn["width_cap"] = max(drawn["base_width"], MIN_WIDTH)
    drawn["input_channels"] = drawn["base_width"]
    return drawn


def _build_inner_depthwise_probe(keras: Any, spec: ArchSpec) -> Any:
    """The depthwise probe's layer as a network holds it: between two pointwise convolutions, so
    that a kernel which leaves the delegate (ptq-dynamic's hybrid depthwise) is timed between two
    delegated partitions, as in MobileNets, not alone."""
    inputs = _image_input(keras, spec)
    x = _conv_bn_relu(keras, inputs, spec.base_width, 1, 1, "before")
    x = _probed_depthwise(keras, x, spec)
    x = _conv_bn_relu(keras, x, spec.base_width, 1, 1, "after")
    return _classifier_2d(keras, x, spec, inputs)


def _build_dense_probe(keras: Any, spec: ArchSpec) -> Any:
    layers = keras.layers
    inputs = _image_input(keras, spec)
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(spec.base_width, activation="relu", name="probe")(x)
    out = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, out, name=f"sampled_{spec.block}_{spec.seed}")


def _hard_sigmoid(layers: Any, x: Any) -> Any:
    return layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def _squeeze_excite(layers: Any, x: Any, spec: ArchSpec) -> Any:
    """MobileNetV3's channel attention: pool, two 1x1 layers, a hard-sigmoid gate, multiply."""
    s = layers.GlobalAveragePooling2D(keepdims=True, name="probe_squeeze")(x)
    s = layers.Conv2D(max(8, spec.input_channels // 4), 1, activation="relu", name="probe_reduce")(s)
    s = layers.Conv2D(spec.input_channels, 1, name="probe_expand")(s)
    return layers.Multiply(name="probe")([x, _hard_sigmoid(layers, s)])


#: What an element-wise image probe runs on its input, by op name (TFLite: ADD, MUL,
#: CONCATENATION, MAX_POOL_2D, AVERAGE_POOL_2D, LOGISTIC, HARD_SWISH, MUL (and ADD once the
#: offset is non-zero) for an unfolded batch norm, PAD, MEAN + 1x1 convolutions + MUL).
_ELTWISE_BUILDERS: dict[str, Callable[[Any, Any, ArchSpec], Any]] = {
    "add": lambda layers, x, spec: layers.Add(name="probe")([x, x]),
    "multiply": lambda layers, x, spec: layers.Multiply(name="probe")([x, x]),
    "concat": lambda layers, x, spec: layers.Concatenate(name="probe")([x, x]),
    "max_pool": lambda layers, x, spec: layers.MaxPooling2D(spec.kernel_sizes[0], strides=spec.strides[0],
                                                           padding="same", name="probe")(x),
    "avg_pool": lambda layers, x, spec: layers.AveragePooling2D(spec.kernel_sizes[0], strides=spec.strides[0],
                                                               padding="same", name="probe")(x),
    "sigmoid": lambda layers, x, spec: layers.Activation("sigmoid", name="probe")(x),
    # as keras.applications' MobileNetV3 writes it (TFLite fuses it to HARD_SWISH)
    "hard_swish": lambda layers, x, spec: layers.Multiply(name="probe")([x, _hard_sigmoid(layers, x)]),
    # a batch norm with no convolution before it to fold into
    "batch_norm": lambda layers, x, spec: layers.BatchNormalization(name="probe")(x),
    "zero_pad": lambda layers, x, spec: layers.ZeroPadding2D(1, name="probe")(x),
    "squeeze_excite": _squeeze_excite,
}
ELTWISE_OPS = tuple(_ELTWISE_BUILDERS)


def _image_op_probe(builders: dict[str, Callable[[Any, Any, ArchSpec], Any]],
                    what: str) -> Callable[[Any, ArchSpec], Any]:
    """A builder of probes that run one of `builders`' ops (the spec's `op`) on an image input."""

    def build(keras: Any, spec: ArchSpec) -> Any:
        inputs = _image_input(keras, spec)
        builder = builders.get(spec.op or "")
        if builder is None:
            raise OptionError(f"unknown {what} probe op {spec.op!r} (valid: {', '.join(builders)})")
        return _classifier_2d(keras, builder(keras.layers, inputs, spec), spec, inputs)

    return build


_build_eltwise_probe = _image_op_probe(_ELTWISE_BUILDERS, "element-wise")


_RESAMPLE_BUILDERS: dict[str, Callable[[Any, Any, ArchSpec], Any]] = {
    "transpose_conv": lambda layers, x, spec: layers.Conv2DTranspose(
        spec.base_width, spec.kernel_sizes[0], strides=spec.strides[0], padding="same", name="probe")(x),
    "upsample": lambda layers, x, spec: layers.UpSampling2D(2, name="probe")(x),
    "upsample_bilinear": lambda layers, x, spec: layers.UpSampling2D(2, interpolation="bilinear", name="probe")(x),
    "grouped_conv": lambda layers, x, spec: layers.Conv2D(
        spec.base_width, spec.kernel_sizes[0], strides=spec.strides[0], padding="same", groups=spec.groups or 1,
        name="probe")(x),
}
RESAMPLE_OPS = tuple(_RESAMPLE_BUILDERS)


_build_resample_probe = _image_op_probe(_RESAMPLE_BUILDERS, "resampling")


#: Activation, pooling, arithmetic and cropping layers that user networks hold and no sampled or
#: zoo network does (TFLite: LEAKY_RELU, PRELU, ELU, SOFTMAX, REDUCE_MAX, MUL and ADD, SUB,
#: MAXIMUM, STRIDED_SLICE). The second operand of the two-input ops is the input plus a constant,
#: so that the converter cannot fold x - x away.
_ACTIVATION_BUILDERS: dict[str, Callable[[Any, Any, ArchSpec], Any]] = {
    "leaky_relu": lambda layers, x, spec: layers.LeakyReLU(0.1, name="probe")(x),
    "prelu": lambda layers, x, spec: layers.PReLU(shared_axes=[1, 2], name="probe")(x),
    "elu": lambda layers, x, spec: layers.ELU(name="probe")(x),
    "softmax": lambda layers, x, spec: layers.Softmax(name="probe")(x),
    "global_max_pool": lambda layers, x, spec: layers.GlobalMaxPooling2D(keepdims=True, name="probe")(x),
    "rescaling": lambda layers, x, spec: layers.Rescaling(1.0 / 127.5, offset=-1.0, name="probe")(x),
    "subtract": lambda layers, x, spec: layers.Subtract(name="probe")([x, x + 1.0]),
    "maximum": lambda layers, x, spec: layers.Maximum(name="probe")([x, x + 1.0]),
    "cropping": lambda layers, x, spec: layers.Cropping2D(1, name="probe")(x),
}
ACTIVATION_OPS = tuple(_ACTIVATION_BUILDERS)

_build_activation_probe = _image_op_probe(_ACTIVATION_BUILDERS, "activation")


def _build_separable_probe(keras: Any, spec: ArchSpec) -> Any:
    inputs = _image_input(keras, spec)
    x = keras.layers.SeparableConv2D(spec.base_width, spec.kernel_sizes[0], strides=spec.strides[0], padding="same",
                                     activation="relu", name="probe")(inputs)
    return _classifier_2d(keras, x, spec, inputs)


def _build_conv1d_probe(keras: Any, spec: ArchSpec) -> Any:
    inputs = keras.Input(shape=(spec.input_size, spec.input_channels), name="signal")
    x = keras.layers.Conv1D(spec.base_width, spec.kernel_sizes[0], strides=spec.strides[0], padding="same",
                            activation="relu", name="probe")(inputs)
    return _classifier_1d(keras, x, spec, inputs)


def _token_input(keras: Any, spec: ArchSpec, batch_size: int | None = None) -> tuple[Any, Any]:
    tokens = keras.Input(shape=(spec.input_size,), batch_size=batch_size, dtype="int32", name="tokens")
    return tokens, keras.layers.Embedding(spec.vocab_size, spec.embed_dim, name="embedding")(tokens)


def _classifier_1d(keras: Any, x: Any, spec: ArchSpec, inputs: Any) -> Any:
    if len(x.shape) == 3:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    out = keras.layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, out, name=f"sampled_{spec.block}_{spec.seed}")


def _build_recurrent_probe(cell: str) -> Callable[[Any, ArchSpec], Any]:
    def build(keras: Any, spec: ArchSpec) -> Any:
        tokens, x = _token_input(keras, spec, batch_size=1)  # the converter wants a fixed batch here
        x = getattr(keras.layers, cell)(spec.base_width, return_sequences=spec.op == "sequence", name="probe")(x)
        return _classifier_1d(keras, x, spec, tokens)

    return build


def _build_attention_probe(keras: Any, spec: ArchSpec) -> Any:
    tokens, x = _token_input(keras, spec)
    heads = spec.heads or 1
    x = keras.layers.MultiHeadAttention(num_heads=heads, key_dim=spec.base_width // heads, name="probe")(x, x)
    return _classifier_1d(keras, x, spec, tokens)


#: What a sequence probe runs on its embedded tokens, by op name: a position-wise dense layer (a
#: transformer's feed-forward half), a layer normalisation, or a residual add followed by one.
_SEQUENCE_BUILDERS: dict[str, Callable[[Any, Any, ArchSpec], Any]] = {
    "dense": lambda layers, x, spec: layers.Dense(spec.base_width, activation="relu", name="probe")(x),
    "layer_norm": lambda layers, x, spec: layers.LayerNormalization(epsilon=1e-6, name="probe")(x),
    "add_layer_norm": lambda layers, x, spec: layers.LayerNormalization(epsilon=1e-6, name="probe")(
        layers.Add(name="probe_add")([x, x])),
}
SEQUENCE_OPS = tuple(_SEQUENCE_BUILDERS)


def _build_sequence_probe(keras: Any, spec: ArchSpec) -> Any:
    tokens, x = _token_input(keras, spec)
    builder = _SEQUENCE_BUILDERS.get(spec.op or "")
    if builder is None:
        raise OptionError(f"unknown sequence probe op {spec.op!r} (valid: {', '.join(SEQUENCE_OPS)})")
    return _classifier_1d(keras, builder(keras.layers, x, spec), spec, tokens)


def _build_dense(keras: Any, spec: ArchSpec) -> Any:
    layers = keras.layers
    inputs = _image_input(keras, spec)
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(spec.widths):
        x = layers.Dense(width, activation="relu", name=f"dense{i}")(x)
    out = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, out, name=f"sampled_dense_{spec.seed}")


def _build_recurrent(cell: str) -> Callable[[Any, ArchSpec], Any]:
    def build(keras: Any, spec: ArchSpec) -> Any:
        layers = keras.layers
        # A fixed batch of 1: the TFLite converter rejects LSTM/GRU with a dynamic batch.
        tokens = keras.Input(shape=(spec.input_size,), batch_size=1, dtype="int32", name="tokens")
        x = layers.Embedding(spec.vocab_size, spec.embed_dim, name="embedding")(tokens)
        for i, width in enumerate(spec.widths):
            x = getattr(layers, cell)(width, return_sequences=i < spec.depth - 1, name=f"{cell.lower()}{i}")(x)
        out = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
        return keras.Model(tokens, out, name=f"sampled_{spec.block}_{spec.seed}")

    return build


def _build_attention(keras: Any, spec: ArchSpec) -> Any:
    from measure.zoo import position_embedding_class

    layers = keras.layers
    d_model, heads = spec.base_width, spec.heads or 1
    tokens = keras.Input(shape=(spec.input_size,), dtype="int32", name="tokens")
    x = layers.Embedding(spec.vocab_size, d_model, name="embedding")(tokens)
    x = position_embedding_class()(spec.input_size, d_model, name="position_embedding")(x)
    for i in range(spec.depth):
        attended = layers.MultiHeadAttention(num_heads=heads, key_dim=d_model // heads,
                                             name=f"block{i}_attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(
            layers.Add(name=f"block{i}_add1")([x, attended]))
        ff = layers.Dense(d_model * (spec.expansion or 1), activation="relu", name=f"block{i}_ffn1")(x)
        ff = layers.Dense(d_model, name=f"block{i}_ffn2")(ff)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(
            layers.Add(name=f"block{i}_add2")([x, ff]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    out = layers.Dense(spec.num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(tokens, out, name=f"sampled_attention_{spec.seed}")


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class BlockKind:
    """One block type: its domain, how its choices are drawn, and how it is built."""

    name: str
    domain: str  # "image" | "text"
    sample: Callable[[random.Random, SampleLimits], dict[str, Any]] = dataclasses.field(repr=False)
    build: Callable[[Any, ArchSpec], Any] = dataclasses.field(repr=False)
    convolutional: bool = False


BLOCKS: dict[str, BlockKind] = {
    b.name: b
    for b in (
        BlockKind("plain", "image", _sample_conv("plain", 12), _conv_body(_plain_block), True),
        BlockKind("residual", "image", _sample_conv("residual", 16), _conv_body(_residual_block), True),
        BlockKind("inverted_residual", "image", _sample_conv("inverted_residual", 16),
                  _conv_body(_inverted_residual_block), True),
        BlockKind("depthwise_separable", "image", _sample_conv("depthwise_separable", 14),
                  _conv_body(_depthwise_separable_block), True),
        BlockKind("dense", "image", _sample_dense, _build_dense),
        BlockKind("lstm", "text", _sample_recurrent, _build_recurrent("LSTM")),
        BlockKind("gru", "text", _sample_recurrent, _build_recurrent("GRU")),
        BlockKind("attention", "text", _sample_attention, _build_attention),
        BlockKind("conv_kernel", "image", _sample_conv_probe(False), _build_conv_probe, True),
        BlockKind("depthwise_kernel", "image", _sample_conv_probe(True), _build_depthwise_probe, True),
        BlockKind("inner_depthwise_kernel", "image", _sample_inner_depthwise_probe, _build_inner_depthwise_probe,
                  True),
        BlockKind("dense_kernel", "image", _sample_dense_probe, _build_dense_probe),
        BlockKind("eltwise_kernel", "image", _sample_eltwise_probe, _build_eltwise_probe, True),
        BlockKind("resample_kernel", "image", _sample_resample_probe, _build_resample_probe, True),
        BlockKind("conv1d_kernel", "audio", _sample_conv1d_probe, _build_conv1d_probe, True),
        BlockKind("activation_kernel", "image", _sample_activation_probe, _build_activation_probe, True),
        BlockKind("separable_kernel", "image", _sample_separable_probe, _build_separable_probe, True),
        BlockKind("grouped_kernel", "image", _sample_grouped_probe, _build_resample_probe, True),
        BlockKind("lstm_kernel", "text", _sample_recurrent_probe, _build_recurrent_probe("LSTM")),
        BlockKind("gru_kernel", "text", _sample_recurrent_probe, _build_recurrent_probe("GRU")),
        BlockKind("attention_kernel", "text", _sample_attention_probe, _build_attention_probe),
        BlockKind("sequence_kernel", "text", _sample_sequence_probe, _build_sequence_probe),
    )
}

#: Kernel probes (one layer each): named like sampled networks, family `sampled-<block>`, which
#: ends in "_kernel" so that `advisor evaluate` can score networks only.
KERNEL_BLOCKS: tuple[str, ...] = tuple(b for b in BLOCKS if b.endswith("_kernel"))
#: The sampled network types ("all" in a plan).
SAMPLED_BLOCKS: tuple[str, ...] = tuple(b for b in BLOCKS if b not in KERNEL_BLOCKS)


def _kind(block: str) -> BlockKind:
    try:
        return BLOCKS[block]
    except KeyError:
        raise UnknownNameError("sampled block type", block, tuple(BLOCKS)) from None


# ---------------------------------------------------------------------------------------------
# Public API


def sampled_name(block: str, seed: int) -> str:
    """The canonical name of a sampled architecture: `sampled:<block>:<seed>`."""
    _kind(block)
    return f"{PREFIX}:{block}:{int(seed)}"


def is_sampled_name(name: str) -> bool:
    """Whether `name` is meant as a sampled architecture (starts with `sampled:`); it may still be malformed."""
    return isinstance(name, str) and name.startswith(PREFIX + ":")


def parse_sampled_name(name: str) -> tuple[str, int]:
    """Split `sampled:<block>:<seed>` into its block type and seed.

    Raises:
        OptionError: the name is not of that form, or the seed is not a non-negative integer.
        UnknownNameError: the block type is not one of `SAMPLED_BLOCKS` (close names suggested).
    """
    match = _NAME.fullmatch(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise OptionError(f"'{name}' is not a sampled architecture name: write sampled:<block>:<seed>, "
                          f"e.g. sampled:residual:17 (blocks: {', '.join(SAMPLED_BLOCKS)})")
    block, seed = match["block"], match["seed"]
    _kind(block)
    if not seed.isdigit():
        raise OptionError(f"the seed in '{name}' must be a non-negative integer, got '{seed}'")
    return block, int(seed)


def sample_arch(block: str, seed: int, limits: SampleLimits = DEFAULT_LIMITS) -> ArchSpec:
    """Draw the architecture `sampled:<block>:<seed>` (deterministic: pure Python, no TensorFlow).

    The generator is `random.Random(f"{block}:{seed}")` rather than `random.Random(seed)`, so
    that, say, `plain:3` and `residual:3` do not share their depth, width and input draws.

    Args:
        block: one of `SAMPLED_BLOCKS`.
        seed: a non-negative integer.
        limits: upper bounds on the draws; the canonical names use `DEFAULT_LIMITS`.

    Raises:
        UnknownNameError: an unknown block type.
        OptionError: a negative or non-integer seed.
    """
    kind = _kind(block)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise OptionError(f"a sampled architecture's seed must be a non-negative integer, got {seed!r}")
    rng = random.Random(f"{block}:{seed}")
    fields = {"width_cap": limits.max_width, **kind.sample(rng, limits)}  # a probe may set its own cap
    return ArchSpec(block=block, seed=seed, **fields)


def build_arch(spec: ArchSpec, seed: int = 0) -> Any:
    """Build the Keras (2) model of `spec`, its weights initialised from `seed`.

    Raises:
        UnknownNameError: the spec's block type is unknown.
    """
    from measure._tf import keras as _keras

    keras = _keras()
    kind = _kind(spec.block)
    keras.utils.set_random_seed(seed)
    return kind.build(keras, spec)


def resolve_sampled(name: str, *, input_size: int | None = None, width: float | None = None,
                    num_classes: int | None = None, seed: int = 0) -> Any:
    """Build the sampled architecture `name` as a `measure.loading.ResolvedModel` (kind "sampled").

    Args:
        name: `sampled:<block>:<seed>`.
        input_size: must be None or the architecture's own input size (it is part of the spec).
        width: must be None (a sampled architecture's widths are part of the spec).
        num_classes: replaces the sampled number of classes (e.g. to fit a dataset).
        seed: the weight-initialisation seed (the architecture's seed is in the name).

    Raises:
        OptionError, UnknownNameError: a malformed name or an option that cannot apply.
    """
    from measure.loading import ResolvedModel, has_recurrent

    block, arch_seed = parse_sampled_name(name)
    spec = sample_arch(block, arch_seed)
    if input_size is not None and input_size != spec.input_size:
        raise OptionError(f"{spec.name} has a fixed input size of {spec.input_size}; input_size "
                          f"{input_size} cannot apply (sample another seed for another shape)")
    if width is not None:
        raise OptionError(f"{spec.name} has no width multiplier (its widths are part of the sampled spec)")
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise OptionError(f"num_classes {num_classes!r} is not valid: must be an integer >= 1")
        spec = dataclasses.replace(spec, num_classes=num_classes)
    model = build_arch(spec, seed=seed)
    return ResolvedModel(
        key=spec.name,
        kind="sampled",
        keras_model=model,
        tflite_path=None,
        family=spec.family,
        domain=spec.domain,
        input_size=spec.input_size,
        width=None,
        num_classes=spec.num_classes,
        weights="random",
        notes=(f"sampled architecture {spec.summary()}",),
        has_recurrent=has_recurrent(model),
    )
