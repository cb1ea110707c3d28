"""Layers of a profile: which a layer-wise step selects, and what structural steps make of them.

Both halves are TensorFlow-free and work on `ModelProfile`s, so the advisor can featurise a
layer-wise or structural plan for a network it has only a profile of. `measure.compress` builds
the real Keras networks the same way (same layer names, types, kernels and strides), and
tests check that the analytic profile here matches the profile of the real network.

Selectors (the part of a step after `@`), a comma-separated union of terms:

  all        every weighted layer (the default: the step applies to the whole model)
  first      the first weighted layer;  last: the last one (usually the classifier)
  mid        every weighted layer but the first and the last
  conv, depthwise, dense, recurrent, attention, embedding   weighted layers of that group
  large      the biggest layers that together hold at least half of the weights
  small      the other weighted layers
  lI / lI-J  weighted layers by position, 0-based (l0 is `first`), both ends included

Weighted layers are those with parameters, except normalisation layers (folded or tiny).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from advisor.errors import SpecError
from advisor.profile import LayerProfile, ModelProfile

NORMALISATION = frozenset({"BatchNormalization", "LayerNormalization", "GroupNormalization",
                           "UnitNormalization"})

#: Selector groups, by Keras class name; the same table as the predictor's layer groups plus embeddings.
_GROUP_TYPES = {
    "conv": ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
             "SeparableConv1D", "SeparableConv2D"),
    "depthwise": ("DepthwiseConv1D", "DepthwiseConv2D"),
    "dense": ("Dense", "EinsumDense"),
    "recurrent": ("LSTM", "GRU", "SimpleRNN", "Bidirectional"),
    "attention": ("MultiHeadAttention",),
    "embedding": ("Embedding",),
}
NAMED = ("all", "first", "last", "mid", "large", "small", *_GROUP_TYPES)
_RANGE = re.compile(r"^l(\d+)(?:-(\d+))?$")
SELECTOR_HELP = ("layers are all, first, last, mid, large, small, conv, depthwise, dense, recurrent, attention, "
                 "embedding, or lI / lI-J (weighted layers by position), joined with ','")


def _terms(text: str) -> list[str]:
    terms = [t.strip().lower() for t in text.split(",")]
    if not text.strip() or any(not t for t in terms):
        raise SpecError(f"empty layer selector '@{text}'; {SELECTOR_HELP}")
    for t in terms:
        m = _RANGE.match(t)
        if t not in NAMED and not m:
            raise SpecError(f"unknown layer selector '{t}'; {SELECTOR_HELP}")
        if m and m.group(2) is not None and int(m.group(2)) < int(m.group(1)):
            raise SpecError(f"layer range '{t}' ends before it starts")
    return terms


def canonical_selector(text: str) -> str:
    """The canonical form of a selector: terms sorted and unique; 'all' absorbs the rest.

    Raises:
        SpecError: an unknown term or an empty selector.
    """
    terms = sorted(set(_terms(text)), key=lambda t: (t[0] == "l" and bool(_RANGE.match(t)), t))
    return "all" if "all" in terms else ",".join(terms)


def weighted(profile: ModelProfile) -> list[LayerProfile]:
    """The layers selectors count: those with parameters, normalisation layers left out."""
    return [ly for ly in profile.layers if ly.params > 0 and ly.type not in NORMALISATION]


def _large(layers: list[LayerProfile]) -> set[str]:
    total = sum(ly.params for ly in layers)
    out, held = set(), 0
    for ly in sorted(layers, key=lambda x: (-x.params, x.name)):
        if held >= total / 2:
            break
        out.add(ly.name)
        held += ly.params
    return out


def select(profile: ModelProfile, selector: str) -> set[str]:
    """Names of the weighted layers of `profile` that `selector` picks."""
    layers = weighted(profile)
    names = [ly.name for ly in layers]
    if not names:
        return set()
    out: set[str] = set()
    large = None
    for term in _terms(selector):
        if term == "all":
            out.update(names)
        elif term == "first":
            out.add(names[0])
        elif term == "last":
            out.add(names[-1])
        elif term == "mid":
            out.update(names[1:-1])
        elif term in ("large", "small"):
            large = _large(layers) if large is None else large
            out.update(n for n in names if (n in large) == (term == "large"))
        elif term in _GROUP_TYPES:
            out.update(ly.name for ly in layers if ly.type in _GROUP_TYPES[term])
        else:
            m = _RANGE.match(term)
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            out.update(names[lo: hi + 1])
    return out


def assign(profile: ModelProfile, steps: list) -> dict[str, object]:
    """Layer name -> the step (of several of one kind) that takes it: the first whose selector
    matches. Layers no step selects are absent."""
    out: dict[str, object] = {}
    for step in steps:
        chosen = select(profile, step.layers)
        # In the network's order, not the set's: sums over the layers then come out the same in
        # every process (a set of names iterates in an order string hashing varies per process).
        for name in (ly.name for ly in profile.layers if ly.name in chosen):
            out.setdefault(name, step)
    return out


# ---------------------------------------------------------------------------------------------
# Low-rank factorisation.


@dataclass(frozen=True)
class Factorisation:
    """How one layer is factorised: rank r of full rank, and the sizes that decide it."""

    name: str
    rows: int  # kxk*c_in (conv) or d_in (dense): the first factor's fan-in
    cols: int  # c_out / units
    rank: int
    bias: bool

    @property
    def saves(self) -> bool:
        return self.rank * (self.rows + self.cols) < self.rows * self.cols


def lowrank_rank(rows: int, cols: int, fraction: float) -> int:
    """The rank kept at `fraction` of full rank (at least 1)."""
    import math

    return max(1, math.ceil(fraction * min(rows, cols)))


def factorisable(layer: LayerProfile) -> bool:
    """A plain Conv2D (no groups) or a Dense layer with known shapes."""
    if not layer.input_shapes or not layer.output_shape or not layer.input_shapes[0]:
        return False
    if layer.type == "Conv2D":
        return layer.groups <= 1 and layer.kernel > 0 and len(layer.output_shape) == 3
    return layer.type == "Dense"


def _fan_in(layer: LayerProfile) -> int:
    """A factorisable layer's kernel rows: k x k x c_in (convolution) or d_in (dense)."""
    return int(layer.input_shapes[0][-1]) * (layer.kernel ** 2 if layer.type == "Conv2D" else 1)


def _bias(layer: LayerProfile) -> int:
    """The bias weights of a plain convolution or dense layer (0: none, or not such a layer)."""
    if not factorisable(layer):
        return 0
    c_out = int(layer.output_shape[-1])
    return c_out if layer.params - _fan_in(layer) * c_out == c_out else 0


def plan_factorisation(layer: LayerProfile, fraction: float) -> Factorisation | None:
    """The factorisation of `layer` at `fraction`, or None if it does not apply or saves nothing."""
    if not factorisable(layer):
        return None
    rows, c_out = _fan_in(layer), int(layer.output_shape[-1])
    f = Factorisation(layer.name, rows, c_out, lowrank_rank(rows, c_out, fraction), _bias(layer) > 0)
    return f if f.saves else None


def _factor_layers(layer: LayerProfile, f: Factorisation) -> tuple[LayerProfile, LayerProfile]:
    spatial = 1
    for d in layer.output_shape[:-1]:
        spatial *= int(d)
    mid_shape = (*layer.output_shape[:-1], f.rank)
    first = LayerProfile(name=f"{layer.name}_lr1", type=layer.type, macs=spatial * f.rows * f.rank,
                         params=f.rows * f.rank, input_shapes=layer.input_shapes, output_shape=mid_shape,
                         kernel=layer.kernel, stride=layer.stride, groups=layer.groups)
    second = LayerProfile(name=layer.name, type=layer.type, macs=spatial * f.rank * f.cols,
                          params=f.rank * f.cols + (f.cols if f.bias else 0), input_shapes=(mid_shape,),
                          output_shape=layer.output_shape, kernel=1 if layer.type == "Conv2D" else 0,
                          stride=1 if layer.type == "Conv2D" else 0, groups=layer.groups)
    return first, second


def factorise(profile: ModelProfile, fraction: float, selector: str = "all") -> ModelProfile:
    """The profile after `lowrank:fraction@selector`: each selected layer that saves parameters
    becomes a rank-r layer named `<name>_lr1` followed by a 1x1 (or dense) layer keeping `<name>`."""
    chosen = select(profile, selector)
    layers: list[LayerProfile] = []
    for layer in profile.layers:
        f = plan_factorisation(layer, fraction) if layer.name in chosen else None
        layers.extend(_factor_layers(layer, f) if f else (layer,))
    if tuple(layers) == profile.layers:
        return profile  # the same network, the same file
    return replace(profile, layers=tuple(layers), tflite_bytes=None, tflite_weights=None)  # another network


# ---------------------------------------------------------------------------------------------
# Width scaling (the distillation student).

#: Layers whose configuration sets their output channels, and the config field that does.
WIDTH_FIELDS = {
    **dict.fromkeys(("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                     "SeparableConv1D", "SeparableConv2D"), "filters"),
    "Dense": "units", "LSTM": "units", "GRU": "units", "SimpleRNN": "units", "Embedding": "output_dim",
}
RECURRENT = frozenset({"LSTM", "GRU", "SimpleRNN"})


def scaled(channels: int, width: float) -> int:
    """Channels of the student: round(channels x width), at least 1."""
    return max(1, int(round(channels * width)))


def width_span(types: list[str]) -> tuple[int, int]:
    """(first, last) positions of the layers a student rebuilds: from the first layer that sets
    its channels to the last one (the classifier, whose outputs stay); (-1, -1) if none."""
    setters = [i for i, t in enumerate(types) if t in WIDTH_FIELDS]
    return (setters[0], setters[-1]) if setters else (-1, -1)


def _ratio(new: int, old: int) -> float:
    return new / old if old else 1.0


def widen(profile: ModelProfile, width: float) -> ModelProfile:
    """The profile of the student at `width`: every layer from the first channel-setting one up to
    the classifier gets round(c x width) channels; the input and the classifier's outputs stay."""
    first, last = width_span([ly.type for ly in profile.layers])
    if first < 0:
        return profile
    layers = []
    for i, ly in enumerate(profile.layers):
        if i < first or i > last:
            layers.append(ly)
            continue
        ins = ly.input_shapes
        if i > first:
            ins = tuple((*s[:-1], scaled(s[-1], width)) if s else s for s in ins)
        c_in = int(ly.input_shapes[0][-1]) if ly.input_shapes and ly.input_shapes[0] else 0
        c_in_new = int(ins[0][-1]) if ins and ins[0] else 0
        out = ly.output_shape
        if out:
            if ly.type == "Flatten" and ins and ins[0]:
                n = 1
                for d in ins[0]:
                    n *= int(d)
                out = (n,)
            elif ly.type == "Concatenate" and ins:
                out = (*out[:-1], sum(int(s[-1]) for s in ins if s))
            elif i != last:
                out = (*out[:-1], scaled(out[-1], width))
        c_out, c_out_new = (int(ly.output_shape[-1]), int(out[-1])) if out else (0, 0)
        bias = 0  # a bias has one weight per output channel: it thins with the outputs alone
        if ly.type in WIDTH_FIELDS:
            f_in = 1.0 if (i == first or ly.type == "Embedding") else _ratio(c_in_new, c_in)
            f = f_in * _ratio(c_out_new, c_out)
            if ly.type in RECURRENT:  # gates x units x (units + inputs)
                f = _ratio(c_out_new, c_out) * _ratio(c_out_new + c_in_new, c_out + c_in)
            else:
                bias = _bias(ly)
        else:  # depthwise, normalisation, pooling, element-wise: work per channel
            f = _ratio(c_out_new, c_out) if ly.type != "Flatten" else _ratio(c_in_new, c_in)
        params = int(round((ly.params - bias) * f)) + int(round(bias * _ratio(c_out_new, c_out)))
        layers.append(replace(ly, macs=int(round(ly.macs * f)), params=params,
                              input_shapes=ins, output_shape=tuple(out)))
    if tuple(layers) == profile.layers:
        return profile  # the same network, the same file
    return replace(profile, layers=tuple(layers), tflite_bytes=None, tflite_weights=None)  # another network


def transform(profile: ModelProfile, pipeline) -> ModelProfile:
    """The profile of the float network `pipeline`'s structural steps build from `profile`."""
    for step in pipeline.steps:
        if step.name == "distill":
            profile = widen(profile, step.width)
        elif step.name == "lowrank":
            profile = factorise(profile, step.rank, step.layers)
    return profile
