"""Which layers the training data timed: a network's layers outside it are named in the answer.

The per-layer latency model learns each layer's cost from its type and shape. A layer type no
training network held (a custom layer, a 3-D convolution) gets its group's cost, and a layer far
larger than any of its type that was timed (attention over 1,024 tokens when the longest timed
was 256) is extrapolated from smaller ones: the prediction can then be off by several times
(measured on networks nobody had timed, 2026-12-06: an attention layer over 1,024 tokens ran
4.3x slower than predicted). The bundle's card records, per layer type, how many training
networks held it and the largest MACs and positions (output elements per channel: pixels or
tokens) timed; `outside` compares a user's network with that record. Pure Python over the
profile: no TensorFlow, cheap enough for every answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from advisor import features as F
from advisor.profile import ModelProfile

#: A layer counts as beyond the timed range when its MACs or positions exceed the largest timed
#: of its type by this factor (the per-layer trees interpolate; a few times beyond, they guess).
BEYOND = 2.0
#: Units that run the kernel of another type: a separable convolution's halves are a depthwise and
#: a 1x1 convolution (DEPTHWISE_CONV_2D and CONV_2D in the converted file).
SAME_KERNEL = {"SeparableConv2D": "DepthwiseConv2D", "SeparableConv1D": "DepthwiseConv2D", F.POINTWISE: "Conv2D"}


@dataclass(frozen=True)
class Outside:
    """One layer of a network outside the training data: its name, type and why."""

    layer: str
    type: str
    why: str


def _kind(u: F.Unit) -> str:
    return SAME_KERNEL.get(u.type, u.type)


def _positions(u: F.Unit) -> float:
    return u.written / u.c_out if u.c_out else u.written


def layer_coverage(profiles: Iterable[ModelProfile]) -> dict[str, dict[str, float]]:
    """Per executed layer type (`features.executed_units`; `SAME_KERNEL` counted as the type whose
    kernel they run), over the given networks: how many hold it, and the largest MACs and
    positions of one such layer."""
    out: dict[str, dict[str, float]] = {}
    for profile in profiles:
        seen = set()
        for u in F.executed_units(profile):
            kind = _kind(u)
            entry = out.setdefault(kind, {"networks": 0, "max_macs": 0.0, "max_positions": 0.0})
            entry["max_macs"] = max(entry["max_macs"], float(u.macs))
            entry["max_positions"] = max(entry["max_positions"], float(_positions(u)))
            if kind not in seen:
                entry["networks"] += 1
                seen.add(kind)
    return {t: out[t] for t in sorted(out)}


def outside(profile: ModelProfile, coverage: Mapping[str, Mapping[str, Any]] | None) -> list[Outside]:
    """The layers of `profile` whose type no training network held, or that are more than `BEYOND`
    times larger (MACs or positions) than any of their type that was timed. Empty when the bundle
    recorded no coverage (bundles before 2026-12-06)."""
    if not coverage:
        return []
    found = []
    for u in F.executed_units(profile):
        known = coverage.get(_kind(u))
        if known is None or not known.get("networks"):
            found.append(Outside(u.layer.name, u.type, "a layer type no training network had"))
            continue
        if u.macs > BEYOND * float(known.get("max_macs", 0.0)) and u.macs > 0:
            found.append(Outside(u.layer.name, u.type, f"{u.macs / 1e6:.3g} M MACs, the largest timed "
                                                       f"{float(known['max_macs']) / 1e6:.3g} M"))
        elif _positions(u) > BEYOND * float(known.get("max_positions", 0.0)):
            found.append(Outside(u.layer.name, u.type, f"{_positions(u):,.0f} positions (pixels or tokens), the "
                                                       f"most timed {float(known['max_positions']):,.0f}"))
    return found


def notes(profile: ModelProfile, predictor: Any) -> list[str]:
    """The answer's line for `profile` against what `predictor`'s training data timed (the
    coverage its data summary records), as a list: empty when nothing lies outside."""
    summary = getattr(predictor, "data_summary_", None) or {}
    line = warning(outside(profile, summary.get("layer_types")))
    return [line] if line else []


def warning(found: list[Outside], shown: int = 3) -> str | None:
    """One explanation line for the layers `outside` found (None when there are none)."""
    if not found:
        return None
    named = "; ".join(f"{o.layer} ({o.type}: {o.why})" for o in found[:shown])
    more = f"; and {len(found) - shown} more" if len(found) > shown else ""
    return (f"warning: {len(found)} layer(s) outside what the training data timed, so their cost is "
            f"extrapolated and the latency may be off by more than its band: {named}{more}; check it with --verify")
