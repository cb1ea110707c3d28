"""The candidate plans the advisor weighs: every technique of the registry with its settings.

Candidates are spec strings (canonical, parseable by `Pipeline.parse`), the uncompressed model
(`none`) always first. The grid is data, not code paths: change the tuples to widen it.
"""

from __future__ import annotations

import functools

from advisor.techniques import Pipeline

SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9)
CLUSTERS = (8, 16, 32, 64)
QUANTIZERS = ("ptq-dynamic", "ptq-float16", "ptq-int8", "qat-int8")
#: Structural steps (a thinner student, factorised layers), alone and under the numeric steps.
STRUCTURES = ("lowrank:0.25", "lowrank:0.5", "distill:0.5", "distill:0.75")


@functools.cache
def candidate_specs() -> tuple[str, ...]:
    """Every candidate pipeline, canonical, `none` first (a few hundred)."""
    prunes = [f"prune:{s:g}" for s in SPARSITIES] + ["prune-2:4"]
    clusters = [f"cluster:{k}" for k in CLUSTERS]
    out = ["none", *QUANTIZERS, *prunes, *clusters]
    out += [f"{p}+{q}" for p in prunes for q in QUANTIZERS]
    out += [f"{c}+{q}" for c in clusters for q in QUANTIZERS]
    out += [f"{p}+{c}" for p in prunes for c in clusters]
    out += [f"{p}+{c}+{q}" for p in prunes for c in clusters for q in ("ptq-int8", "qat-int8")]
    out += list(STRUCTURES) + [f"{st}+{q}" for st in STRUCTURES for q in QUANTIZERS]
    out += [f"{st}+prune:{sp:g}+{q}" for st in STRUCTURES for sp in (0.5, 0.8) for q in ("ptq-int8", "qat-int8")]
    return tuple(Pipeline.parse(s).spec for s in out)


def family_of(spec: str) -> str:
    """The family a candidate belongs to, for explanations: its steps' names without settings."""
    if spec == "none":
        return "none"
    pipeline = Pipeline.parse(spec)
    names = list(dict.fromkeys(s.name for s in pipeline.steps))
    return "+".join(names) + (" (layer-wise)" if pipeline.is_layerwise else "")
