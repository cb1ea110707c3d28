"""The layer-wise plan search: spec encoding, finding a known optimum, and `recommend --search layerwise`."""

from __future__ import annotations

import numpy as np
import pytest
from test_api import advisor, bundle_dir  # noqa: F401 - module fixtures, reused

from advisor import layers as L
from advisor.api import profile_for
from advisor.errors import OptionError
from advisor.recommend import Constraints
from advisor.search import Genome, SearchSettings, search_layerwise, to_spec
from advisor.techniques import Pipeline


def test_genomes_become_canonical_layerwise_specs():
    s = SearchSettings()
    n = 6
    assert to_spec(Genome("none", (0,) * n, "none", (False,) * n), s) == "none"
    assert to_spec(Genome("none", (4,) * n, "qat", (True,) * n), s) == "prune:0.9+qat-int8"
    spec = to_spec(Genome("distill:0.5", (0, 0, 5, 5, 1, 5), "qat", (False, True, True, True, True, False)), s)
    assert spec == "distill:0.5+prune:0.95@l2-3,l5+prune:0.5@l4+qat-int8@l1-4"
    assert Pipeline.parse(spec).spec == spec


def _toy_score(profile, sensitive: int):
    """A made-up cost model (not the predictor): the first `sensitive` weighted layers lose 10 pp of
    accuracy per unit of sparsity, the others 0.1 pp; size falls with the weights pruned."""
    names = [ly.name for ly in L.weighted(profile)]
    params = np.array([ly.params for ly in L.weighted(profile)], dtype=float)

    def score(specs):
        acc, size = [], []
        for spec in specs:
            pipeline = Pipeline.parse(spec)
            prunes = [st for st in pipeline.steps if st.kind == "prune"]
            taken = L.assign(profile, prunes)
            sp = np.array([taken[n].sparsity if n in taken else 0.0 for n in names])
            acc.append(-(10 * sp[:sensitive].sum() + 0.1 * sp[sensitive:].sum()))
            size.append(1.0 + (params * (1 - sp)).sum() / params.sum())
        acc, size = np.array(acc), np.array(size)
        return {"accuracy_delta_pp": np.column_stack([acc - 0.1, acc, acc + 0.1]),
                "size_mb": np.column_stack([size * 0.99, size, size * 1.01]),
                "latency_ms": np.column_stack([size * 0.99, size, size * 1.01])}

    return score


def test_search_finds_the_plan_that_spares_the_sensitive_layers():
    profile = profile_for("mobilenet_v2@96")
    score = _toy_score(profile, sensitive=4)
    settings = SearchSettings(structures=("none",), quantizers=("none",), generations=25, population=48)
    result = search_layerwise(profile, score, Constraints(max_accuracy_drop=1.0, objective="size"), settings)
    best = result.specs[0]
    q = score([best])
    assert q["accuracy_delta_pp"][0, 0] >= -1.0  # it meets the constraint at the pessimistic bound
    whole = score([f"prune:{s:g}" for s in (0.5, 0.7, 0.8, 0.9, 0.95)])
    feasible = whole["accuracy_delta_pp"][:, 0] >= -1.0
    best_whole = whole["size_mb"][feasible, 1].min() if feasible.any() else 2.0
    assert q["size_mb"][0, 1] < best_whole - 0.3  # far smaller than any whole-model pruning that is allowed
    assert Pipeline.parse(best).is_layerwise
    # Deterministic for a seed.
    again = search_layerwise(profile, score, Constraints(max_accuracy_drop=1.0, objective="size"), settings)
    assert again.specs == result.specs


def test_recommend_searches_layerwise_and_compares_with_whole_model_plans(advisor):  # noqa: F811
    rec = advisor.recommend("mobilenet_v2@96", budget_ms=1000, search="layerwise")
    out = rec.to_dict()
    assert out["search"]["mode"] == "layerwise" and out["search"]["evaluated"] > 100
    for kind in ("whole_model", "layerwise"):
        Pipeline.parse(out["search"][kind]["technique"])
        assert out["search"][kind]["predicted"]["latency_ms"]["p50"] > 0
    assert any(line.startswith("layer-wise search:") for line in out["explanation"])
    assert out["predictor"]["candidates"] > rec.predictor["candidates"] - 1  # the plans found were scored
    plain = advisor.recommend("mobilenet_v2@96", budget_ms=1000)
    assert plain.search is None
    with pytest.raises(OptionError, match="--search"):
        advisor.recommend("mobilenet_v2@96", search="everything")
