"""Plans the conversion tools cannot apply to a network, known from measurement, not guessed.

A limit names the layer types it concerns, the steps that trigger it and why. The advisor leaves
such plans out of its candidates and says so; the measurement side refuses them in one line
instead of running them, because some of them take the process down in native code (no Python
exception to catch): a user's `advisor verify` died with a segmentation fault and no message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from advisor.profile import ModelProfile
from advisor.techniques import Pipeline


@dataclass(frozen=True)
class Limit:
    """Plans with any of `steps` cannot be applied to a network with any of `layer_types`."""

    layer_types: frozenset[str]
    steps: frozenset[str]
    reason: str

    def blocks(self, layer_types: Iterable[str], pipeline: Pipeline) -> bool:
        return bool(self.layer_types & set(layer_types)) and any(s.name in self.steps for s in pipeline.steps)


LIMITS: tuple[Limit, ...] = (
    Limit(frozenset({"GRU"}), frozenset({"ptq-int8"}),
          "the TFLite converter (TensorFlow 2.21) crashes in native code quantizing a GRU to full integer "
          "(every sampled GRU network and the zoo's GRU, 2026-12-05); ptq-dynamic, ptq-float16 and qat-int8 convert"),
)


def blocked(profile: ModelProfile | None, spec: str | Pipeline) -> str | None:
    """Why `spec` cannot be applied to the network (one line, naming the steps and layers), or None
    where nothing known stops it."""
    return blocked_plans(profile, [spec]).get(spec if isinstance(spec, str) else spec.spec)


def blocked_plans(profile: ModelProfile | None, specs: Iterable[str | Pipeline]) -> dict[str, str]:
    """spec -> why, for the plans of `specs` that cannot be applied to the network: the network's
    layer types are read once, and a network no limit concerns (most) parses no spec."""
    if profile is None:
        return {}
    types = {layer.type for layer in profile.layers}
    relevant = [limit for limit in LIMITS if limit.layer_types & types]
    out: dict[str, str] = {}
    for spec in specs if relevant else ():
        pipeline = spec if isinstance(spec, Pipeline) else Pipeline.parse(spec)
        limit = next((lim for lim in relevant if lim.blocks(types, pipeline)), None)
        if limit is not None:
            out[spec if isinstance(spec, str) else pipeline.spec] = (
                f"{'/'.join(sorted(limit.steps))} on a network with {'/'.join(sorted(limit.layer_types & types))} "
                f"layers: {limit.reason}")
    return out
