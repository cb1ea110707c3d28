"""Layer-wise plan search (`recommend --search layerwise`), with the predictor as cost model.

AdaDeep's idea: choose, layer by layer, the techniques and settings that fit the user's demands
on one device. A plan here is a structure (none, a low-rank factorisation or a distillation
student) plus, per weighted layer of the network it builds, a pruning sparsity and whether the
layer is quantized (QAT int8) or, instead, one whole-model post-training quantizer. The plan is
written as an ordinary spec with layer selectors (`prune:0.9@l4-9+prune:0.5@l0-3+qat-int8@l1-9`),
so it is featurised, measured (`--verify`) and stored like any other.

The search is evolutionary: for each structure, a population of plans seeded with whole-model
plans is mutated (a run of adjacent layers gets a new sparsity or quantization) and recombined
(layer by layer) for a few generations; every plan is scored in one batch per generation by the
predictor, and kept by fitness: a plan that meets every constraint (at the stated confidence,
as `advisor.recommend.decide` judges) by its objective, any other by how far it misses. The
whole thing is deterministic for a seed; the advisor then decides among the best plans found and
the whole-model candidates, and reports the best of each kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from advisor.layers import weighted
from advisor.profile import ModelProfile
from advisor.recommend import LOWER_IS_BETTER, OBJECTIVES, TRADE_OFF_DROP_PP, Constraints, objective_values, pessimistic


@dataclass(frozen=True)
class SearchSettings:
    """The search space and effort of the layer-wise search."""

    structures: tuple[str, ...] = ("none", "lowrank:0.25", "lowrank:0.5", "distill:0.5", "distill:0.75")
    sparsities: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
    quantizers: tuple[str, ...] = ("none", "ptq-dynamic", "ptq-float16", "ptq-int8", "qat")
    population: int = 48
    generations: int = 10
    keep: int = 8  # best plans handed to the decision, per structure
    seed: int = 0


@dataclass(frozen=True)
class Genome:
    """One layer-wise plan: structure, sparsity level per layer, quantizer, QAT mask per layer."""

    structure: str
    sparsity: tuple[int, ...]  # index into SearchSettings.sparsities, per weighted layer
    quantizer: str
    qat: tuple[bool, ...]


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> 'l0-2,l5,l7-8'."""
    out, start = [], None
    for i, v in enumerate(indices):
        if start is None:
            start = v
        if i + 1 == len(indices) or indices[i + 1] != v + 1:
            out.append(f"l{start}" if start == v else f"l{start}-{v}")
            start = None
    return ",".join(out)


def to_spec(g: Genome, settings: SearchSettings) -> str:
    """The canonical spec of a genome."""
    from advisor.techniques import Pipeline

    steps = [] if g.structure == "none" else [g.structure]
    levels = sorted({s for s in g.sparsity if settings.sparsities[s] > 0}, key=lambda s: -settings.sparsities[s])
    n = len(g.sparsity)
    for k, level in enumerate(levels):
        layers = [i for i, s in enumerate(g.sparsity) if s == level]
        value = f"prune:{settings.sparsities[level]:g}"
        last_covers_all = k == len(levels) - 1 and len(layers) == n
        steps.append(value if last_covers_all else f"{value}@{_ranges(layers)}")
    if g.quantizer == "qat":
        layers = [i for i, q in enumerate(g.qat) if q]
        if layers:
            steps.append("qat-int8" if len(layers) == n else f"qat-int8@{_ranges(layers)}")
    elif g.quantizer != "none":
        steps.append(g.quantizer)
    return Pipeline.parse("+".join(steps) or "none").spec


def _fitness(pred: dict[str, np.ndarray], constraints: Constraints) -> np.ndarray:
    """Higher is better: a feasible plan by its objective; an infeasible one below every feasible
    one, by its total relative miss."""
    n = len(next(iter(pred.values())))
    limits = constraints.limits()
    conf = constraints.confidence
    miss = np.zeros(n)
    if not constraints.any and "accuracy_delta_pp" in pred:
        limits = {"accuracy_delta_pp": -TRADE_OFF_DROP_PP}
    for t, lim in limits.items():
        if t not in pred:
            continue
        v = pessimistic(pred, t, conf)
        over = np.maximum(v - lim, 0) if LOWER_IS_BETTER[t] else np.maximum(lim - v, 0)
        miss += over / max(abs(lim), 1.0)
    obj = OBJECTIVES[constraints.objective] if constraints.any else "latency_ms"
    if obj not in pred:
        obj = "latency_ms"
    value = objective_values(pred, obj, conf)
    score = value if obj == "accuracy_delta_pp" else -np.log(np.maximum(value, 1e-12))
    return np.where(miss > 0, -1e6 - miss, score)


def _seeds(n: int, settings: SearchSettings, structure: str) -> list[Genome]:
    """Whole-model plans: every sparsity with every quantizer (QAT on all layers)."""
    out = []
    for s in range(len(settings.sparsities)):
        for q in settings.quantizers:
            out.append(Genome(structure, (s,) * n, q, (q == "qat",) * n))
    return out


def _mutate(g: Genome, rng: np.random.Generator, settings: SearchSettings) -> Genome:
    n = len(g.sparsity)
    i = int(rng.integers(n))
    j = min(n, i + 1 + int(rng.geometric(0.35)) - 1)
    what = rng.random()
    if what < 0.55:
        level = int(rng.integers(len(settings.sparsities)))
        sparsity = g.sparsity[:i] + (level,) * (j - i) + g.sparsity[j:]
        return Genome(g.structure, sparsity, g.quantizer, g.qat)
    if what < 0.85 and g.quantizer == "qat":
        flip = not g.qat[i]
        return Genome(g.structure, g.sparsity, g.quantizer, g.qat[:i] + (flip,) * (j - i) + g.qat[j:])
    q = settings.quantizers[int(rng.integers(len(settings.quantizers)))]
    return Genome(g.structure, g.sparsity, q, g.qat if q != "qat" or any(g.qat) else (True,) * n)


def _cross(a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
    mask = rng.random(len(a.sparsity)) < 0.5
    sparsity = tuple(x if m else y for x, y, m in zip(a.sparsity, b.sparsity, mask))
    qat = tuple(x if m else y for x, y, m in zip(a.qat, b.qat, mask))
    return Genome(a.structure, sparsity, a.quantizer if rng.random() < 0.5 else b.quantizer, qat)


@dataclass
class SearchResult:
    """The best plans found (specs, best first) and how much searching it took."""

    specs: list[str]
    evaluated: int
    seconds: float

    def to_dict(self) -> dict:
        return {"evaluated": self.evaluated, "seconds": round(self.seconds, 3), "kept": len(self.specs)}


def search_layerwise(profile: ModelProfile, score: Callable[[list[str]], dict[str, np.ndarray]],
                     constraints: Constraints, settings: SearchSettings = SearchSettings()) -> SearchResult:
    """Search layer-wise plans for `profile`, scoring batches of specs with `score` (the predictor:
    spec list -> target -> (n, 3) p10/p50/p90). Returns the best plans of every structure."""
    from advisor.features import built_profile

    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    seen: dict[str, float] = {}
    kept: list[tuple[float, str]] = []
    for structure in settings.structures:
        n = len(weighted(built_profile(profile, structure)))
        if n == 0:
            continue
        population = _seeds(n, settings, structure)
        fitness: dict[Genome, float] = {}
        for _ in range(settings.generations + 1):
            fresh = [g for g in dict.fromkeys(population) if g not in fitness]
            specs = [to_spec(g, settings) for g in fresh]
            todo = [s for s in dict.fromkeys(specs) if s not in seen]
            if todo:
                values = _fitness(score(todo), constraints)
                seen.update(zip(todo, (float(v) for v in values)))
            fitness.update({g: seen[s] for g, s in zip(fresh, specs)})
            ranked = sorted(fitness, key=lambda g: -fitness[g])
            parents = ranked[: max(2, settings.population // 4)]
            children = []
            while len(children) < settings.population:
                a = parents[int(rng.integers(len(parents)))]
                child = _cross(a, parents[int(rng.integers(len(parents)))], rng) if rng.random() < 0.3 else a
                children.append(_mutate(child, rng, settings))
            population = parents + children
        best = sorted({to_spec(g, settings): fitness[g] for g in fitness}.items(), key=lambda kv: -kv[1])
        kept.extend((v, s) for s, v in best[: settings.keep])
    kept.sort(key=lambda vs: -vs[0])
    return SearchResult([s for _, s in kept], len(seen), time.perf_counter() - start)
