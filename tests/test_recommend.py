"""The decision rule on hand-made predictions: no model, no bundle, every number chosen by hand.

Each candidate's prediction is a p10/p50/p90 band per target; `decide` must count a budget as
met only on the pessimistic side of the band, keep the uncompressed model unless compressing is
feasible and better enough, and say what the nearest plan misses when nothing is feasible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from advisor.errors import OptionError
from advisor.recommend import (
    ACCURACY_TIE_PP,
    MIN_GAIN,
    TRADE_OFF_DROP_PP,
    Constraints,
    decide,
    pareto_front,
    pessimistic,
    quantile,
)


def bands(*rows: tuple[float, float, float]) -> np.ndarray:
    """An (n, 3) p10/p50/p90 array from one (p10, p50, p90) tuple per candidate."""
    return np.asarray(rows, dtype=float)


def flat(*values: float) -> np.ndarray:
    """Bands of zero width: the prediction is certain."""
    return bands(*((v, v, v) for v in values))


# ---------------------------------------------------------------------------------------------
# keep


def test_keep_when_the_baseline_meets_the_budget_and_no_candidate_is_better_enough():
    specs = ["none", "ptq-int8", "prune:0.5"]
    pred = {"latency_ms": bands((9, 10, 11), (9.2, 9.8, 10.4), (9, 9.9, 10.8)),  # 2% and 1% faster: not enough
            "accuracy_delta_pp": bands((0, 0, 0), (-0.4, -0.2, 0), (-1, -0.5, 0))}
    v = decide(specs, pred, Constraints(budget_ms=20, objective="latency"))
    assert v["decision"] == "keep" and v["choice"] == 0
    assert v["feasible"].all()
    # the same candidate, faster by more than MIN_GAIN, is worth compressing for
    faster = 10 * (1 - MIN_GAIN["latency_ms"]) - 0.5
    pred["latency_ms"][1] = (faster - 0.3, faster, faster + 0.3)
    v = decide(specs, pred, Constraints(budget_ms=20, objective="latency"))
    assert v["decision"] == "compress" and specs[v["choice"]] == "ptq-int8"


def test_keep_under_the_accuracy_objective_when_compression_only_loses_accuracy():
    specs = ["none", "ptq-int8", "prune:0.8"]
    pred = {"latency_ms": bands((9, 10, 11), (4, 5, 6), (7, 8, 9)),
            "accuracy_delta_pp": bands((0, 0, 0), (-1, -0.5, 0), (-3, -2, -1))}
    v = decide(specs, pred, Constraints(budget_ms=20))  # objective defaults to accuracy
    assert v["decision"] == "keep" and v["choice"] == 0


def test_a_predicted_accuracy_gain_earns_no_credit_and_a_surer_loss_ranks_first():
    """The accuracy objective ranks by the pessimistic bound capped at 0: a median gain with a wide
    band (the model extrapolating) neither beats keeping the model nor a plan whose loss is surer."""
    specs = ["none", "distill:0.5+qat-int8@mid", "ptq-int8"]
    pred = {"latency_ms": bands((9, 10, 11), (1, 1.5, 2), (4, 5, 6)),
            "accuracy_delta_pp": bands((0, 0, 0), (-4.4, 7.3, 12.1), (-0.8, -0.4, 0))}
    v = decide(specs, pred, Constraints(budget_ms=20))
    assert v["decision"] == "keep"
    v = decide(specs, pred, Constraints(budget_ms=7))  # the model misses: the surer plan, not the faster
    assert v["decision"] == "compress" and specs[v["choice"]] == "ptq-int8"


def test_the_first_candidate_must_be_the_uncompressed_model():
    with pytest.raises(ValueError, match="uncompressed"):
        decide(["ptq-int8", "none"], {"latency_ms": flat(1, 2)}, Constraints(budget_ms=5))


# ---------------------------------------------------------------------------------------------
# compress, at the confidence bound


def _two_plans():
    """The baseline misses 30 ms; ptq-int8 meets it at p90; prune:0.5 only at its median (and is
    more accurate, so a rule that looked at medians would pick it)."""
    specs = ["none", "ptq-int8", "prune:0.5"]
    pred = {"latency_ms": bands((40, 50, 60), (20, 25, 28), (15, 20, 45)),
            "accuracy_delta_pp": bands((0, 0, 0), (-1.5, -1, -0.5), (-0.4, -0.2, 0))}
    return specs, pred


def test_compress_with_the_plan_that_meets_the_budget_at_the_confidence_bound():
    specs, pred = _two_plans()
    v = decide(specs, pred, Constraints(budget_ms=30))
    assert v["decision"] == "compress"
    assert specs[v["choice"]] == "ptq-int8"
    assert list(v["feasible"]) == [False, True, False]
    np.testing.assert_allclose(v["misses"]["latency_ms"], [30, 0, 15])  # p90 minus the budget


def test_a_median_that_meets_the_budget_is_not_enough():
    specs, pred = _two_plans()
    only_median = ["none", "prune:0.5"]
    sub = {t: q[[0, 2]] for t, q in pred.items()}
    v = decide(only_median, sub, Constraints(budget_ms=30))
    assert v["decision"] == "infeasible"
    # ... but it is at 50% confidence, where the bound is the median itself
    v = decide(only_median, sub, Constraints(budget_ms=30, confidence=0.5))
    assert v["decision"] == "compress" and only_median[v["choice"]] == "prune:0.5"


def test_a_higher_confidence_reads_further_into_the_tail():
    specs, pred = _two_plans()
    # ptq-int8's p90 is 28: at 95% the bound is 25 + 3 * z(.95)/z(.90) = 28.85, still within 29
    assert decide(specs, pred, Constraints(budget_ms=29, confidence=0.95))["decision"] == "compress"
    # at 99% it is 25 + 3 * z(.99)/z(.90) = 30.45: over
    assert decide(specs, pred, Constraints(budget_ms=29, confidence=0.99))["decision"] == "infeasible"


# ---------------------------------------------------------------------------------------------
# infeasible


def test_infeasible_names_the_nearest_plan_and_by_how_much_it_misses():
    specs = ["none", "ptq-int8", "prune:0.5", "cluster:16"]
    pred = {"latency_ms": bands((90, 100, 110), (40, 50, 60), (35, 40, 45), (80, 95, 105))}
    v = decide(specs, pred, Constraints(budget_ms=30))
    assert v["decision"] == "infeasible"
    assert specs[v["choice"]] == "prune:0.5"
    assert v["misses"]["latency_ms"][v["choice"]] == pytest.approx(15)
    assert not v["feasible"].any()
    assert "misses the latency budget by 30 ms at the 90% bound (ptq-int8)" in v["reasons"]["ptq-int8"]


def test_infeasible_nearest_weighs_relative_misses_across_constraints():
    specs = ["none", "ptq-int8", "prune:0.5"]
    # ptq-int8 misses latency by 1 of 10 ms (10%); prune:0.5 meets latency, misses size by 5 of 10 MB (50%)
    pred = {"latency_ms": flat(20, 11, 9), "size_mb": flat(40, 10, 15)}
    v = decide(specs, pred, Constraints(budget_ms=10, max_size_mb=10))
    assert v["decision"] == "infeasible" and specs[v["choice"]] == "ptq-int8"
    assert v["misses"]["latency_ms"][1] == pytest.approx(1) and v["misses"]["size_mb"][1] == 0
    assert v["misses"]["size_mb"][2] == pytest.approx(5)


# ---------------------------------------------------------------------------------------------
# the objective


def _three_ways():
    """All three compressed plans meet the budget (the baseline does not): one is fastest, one most
    accurate, one smallest."""
    specs = ["none", "ptq-int8", "ptq-float16", "prune:0.8+ptq-int8"]
    pred = {"latency_ms": flat(50, 10, 30, 25),
            "accuracy_delta_pp": flat(0, -3, -0.1, -1.5),
            "size_mb": flat(40, 10, 20, 2)}
    return specs, pred


@pytest.mark.parametrize("objective, expected", [
    ("latency", "ptq-int8"), ("accuracy", "ptq-float16"), ("size", "prune:0.8+ptq-int8"),
])
def test_the_objective_picks_among_the_feasible_plans(objective, expected):
    specs, pred = _three_ways()
    v = decide(specs, pred, Constraints(budget_ms=45, objective=objective))
    assert v["decision"] == "compress" and specs[v["choice"]] == expected


def test_an_objective_the_predictor_lacks_falls_back_to_latency():
    specs, pred = _three_ways()
    v = decide(specs, pred, Constraints(budget_ms=45, objective="energy"))  # no energy predictions
    assert v["objective"] == "latency_ms" and specs[v["choice"]] == "ptq-int8"


# ---------------------------------------------------------------------------------------------
# the accuracy limit


def test_the_accuracy_limit_is_checked_on_the_lower_quantile():
    specs = ["none", "ptq-int8", "ptq-dynamic"]
    pred = {"latency_ms": flat(20, 8, 12),
            # ptq-int8: median -0.5 is within 1 point, but its p10 (-1.5) is not
            "accuracy_delta_pp": bands((0, 0, 0), (-1.5, -0.5, 0), (-0.9, -0.6, -0.3))}
    v = decide(specs, pred, Constraints(max_accuracy_drop=1.0, objective="latency"))
    assert specs[v["choice"]] == "ptq-dynamic"
    assert list(v["feasible"]) == [True, False, True]
    assert v["misses"]["accuracy_delta_pp"][1] == pytest.approx(0.5)
    assert "breaks the accuracy limit by 0.5 pp" in v["reasons"]["ptq-int8"]


def test_an_unknown_accuracy_change_is_never_promised_nor_preferred():
    """A plan whose accuracy change the predictor has no evidence for (NaN) is fast, but it must not
    win on the accuracy objective, meet an accuracy limit, or enter the best trade-off."""
    specs = ["none", "ptq-int8", "distill:0.5+ptq-int8"]
    pred = {"latency_ms": flat(50, 20, 5),
            "accuracy_delta_pp": bands((0, 0, 0), (-0.3, -0.1, 0.1), (np.nan, np.nan, np.nan))}
    v = decide(specs, pred, Constraints(budget_ms=30))  # objective: accuracy
    assert specs[v["choice"]] == "ptq-int8"
    assert "accuracy change unknown" in v["reasons"]["distill+ptq-int8"]
    v = decide(specs, pred, Constraints(budget_ms=30, max_accuracy_drop=5, objective="latency"))
    assert specs[v["choice"]] == "ptq-int8" and not v["feasible"][2]
    v = decide(specs, pred, Constraints())
    assert specs[v["choice"]] == "ptq-int8" and not v["feasible"][2]
    assert 2 not in set(v["pareto"].tolist())
    # asked only for speed, the fast plan is chosen: the caller says its accuracy is unknown
    v = decide(specs, pred, Constraints(budget_ms=30, objective="latency"))
    assert specs[v["choice"]] == "distill:0.5+ptq-int8"


# ---------------------------------------------------------------------------------------------
# no constraint: the best trade-off


def test_no_constraint_is_the_fastest_plan_within_the_trade_off_accuracy_band():
    specs = ["none", "prune:0.9", "ptq-int8", "ptq-float16"]
    pred = {"latency_ms": flat(20, 5, 10, 15),
            "accuracy_delta_pp": bands((0, 0, 0), (-8, -5, -3), (-0.8, -0.4, 0), (-0.1, 0, 0))}
    v = decide(specs, pred, Constraints())
    assert not Constraints().any
    assert v["decision"] == "compress" and specs[v["choice"]] == "ptq-int8"  # prune:0.9 loses too much
    assert list(v["feasible"]) == [True, False, True, True]
    assert f"at most {TRADE_OFF_DROP_PP:g} point" in v["explanation"][0]
    # the rejected family says what it breaks: the implicit accuracy limit, at the bound
    assert f"breaks the accuracy limit by {8 - TRADE_OFF_DROP_PP:g} pp" in v["reasons"]["prune"]
    assert "misses" in v and "accuracy_delta_pp" not in v["misses"]  # no limit the user gave


def test_no_constraint_keeps_the_model_when_nothing_is_faster_enough():
    specs = ["none", "ptq-int8"]
    pred = {"latency_ms": flat(20, 19.5), "accuracy_delta_pp": flat(0, -0.2)}
    assert decide(specs, pred, Constraints())["decision"] == "keep"


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("kwargs, fragment", [
    ({"budget_ms": -5}, "--budget-ms must be a positive number, got -5"),
    ({"budget_ms": 0}, "--budget-ms must be a positive number"),
    ({"budget_ms": math.inf}, "--budget-ms must be a positive number"),
    ({"budget_ms": math.nan}, "--budget-ms must be a positive number"),
    ({"budget_mj": -1}, "--budget-mj must be a positive number"),
    ({"max_size_mb": -0.1}, "--max-size-mb must be a positive number"),
    ({"max_accuracy_drop": 150}, "--max-accuracy-drop must be between 0 and 100 points, got 150"),
    ({"max_accuracy_drop": -1}, "--max-accuracy-drop must be between 0 and 100"),
    ({"confidence": 0.3}, r"--confidence must be in \[0.5, 1\), got 0.3"),
    ({"confidence": 1.0}, r"--confidence must be in \[0.5, 1\)"),
    ({"objective": "speed"}, "unknown objective 'speed' .valid: accuracy, latency, energy, size."),
])
def test_impossible_constraints_are_option_errors(kwargs, fragment):
    with pytest.raises(OptionError, match=fragment):
        Constraints(**kwargs)


def test_limits_are_in_the_targets_own_terms():
    c = Constraints(budget_ms=10, budget_mj=3, max_size_mb=2, max_accuracy_drop=1.5)
    assert c.any
    assert c.limits() == {"latency_ms": 10, "energy_mj": 3, "size_mb": 2, "accuracy_delta_pp": -1.5}
    assert Constraints(max_accuracy_drop=0).limits() == {"accuracy_delta_pp": 0}
    assert c.to_dict()["objective"] == "accuracy" and c.to_dict()["confidence"] == 0.9


def test_a_constraint_on_a_target_the_predictor_lacks_is_an_option_error():
    specs = ["none", "ptq-int8"]
    pred = {"latency_ms": flat(20, 10), "size_mb": flat(4, 1)}
    with pytest.raises(OptionError, match="no energy mj model"):
        decide(specs, pred, Constraints(budget_mj=5))
    with pytest.raises(OptionError, match="no accuracy delta pp model"):
        decide(specs, pred, Constraints(max_accuracy_drop=1))


# ---------------------------------------------------------------------------------------------
# quantile and pessimistic


Z90, Z95, Z99 = 1.2815515655446004, 1.6448536269514722, 2.3263478740408408


@pytest.mark.parametrize("p, expected", [
    (0.5, 10.0),
    (0.9, 14.0),
    (0.1, 8.0),
    (0.7, 12.0),  # halfway from p50 to p90
    (0.3, 9.0),  # halfway from p50 to p10
    (0.8, 13.0),
    (0.95, 10 + 4 * Z95 / Z90),  # beyond p90: the normal tail scaled to the upper spread
    (0.99, 10 + 4 * Z99 / Z90),
    (0.05, 10 - 2 * Z95 / Z90),  # below p10: the lower spread
])
def test_quantile_interpolates_inside_and_extrapolates_normal_tails(p, expected):
    q = bands((8, 10, 14))
    assert quantile(q, p)[0] == pytest.approx(expected, rel=1e-9)


def test_quantile_is_vectorised_and_monotone_in_p():
    q = bands((8, 10, 14), (1, 1, 1), (-3, -1, 0))
    ps = [0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.98]
    values = np.column_stack([quantile(q, p) for p in ps])
    assert values.shape == (3, len(ps))
    assert np.all(np.diff(values, axis=1) >= 0)
    np.testing.assert_array_equal(values[1], 1.0)  # a zero-width band stays put


def test_pessimistic_is_the_upper_side_for_costs_and_the_lower_side_for_accuracy():
    pred = {"latency_ms": bands((8, 10, 14)), "size_mb": bands((1, 2, 3)), "accuracy_delta_pp": bands((-3, -1, 0))}
    assert pessimistic(pred, "latency_ms", 0.9)[0] == 14
    assert pessimistic(pred, "size_mb", 0.9)[0] == 3
    assert pessimistic(pred, "accuracy_delta_pp", 0.9)[0] == pytest.approx(-3)
    assert pessimistic(pred, "accuracy_delta_pp", 0.7)[0] == pytest.approx(-2)


# ---------------------------------------------------------------------------------------------
# the Pareto front


def test_pareto_front_keeps_exactly_the_non_dominated_plans_ordered_by_latency():
    #                0          1          2         3         4          5 (a copy of 2)
    lat = np.array([5.0, 3.0, 4.0, 6.0, 3.0, 4.0])
    acc = np.array([-1.0, -2.0, 0.0, 1.0, -3.0, 0.0])
    front = pareto_front(lat, acc)
    # 4 is dominated by 1 (same latency, less accurate); 0 by 2; 5 duplicates 2 and adds nothing
    assert list(front) == [1, 2, 3]
    for i in range(len(lat)):
        dominated = any(lat[j] <= lat[i] and acc[j] >= acc[i] and (lat[j] < lat[i] or acc[j] > acc[i])
                        for j in range(len(lat)))
        assert (i in front) or dominated or (lat[i], acc[i]) in {(lat[k], acc[k]) for k in front}


def test_pareto_front_of_one_plan_and_of_a_chain():
    assert list(pareto_front(np.array([7.0]), np.array([0.0]))) == [0]
    # faster is always less accurate: everything is on the front
    assert list(pareto_front(np.array([4.0, 1.0, 3.0, 2.0]), np.array([3.0, 0.0, 2.0, 1.0]))) == [1, 3, 2, 0]
    # one plan faster and more accurate than all: the front is that plan alone
    assert list(pareto_front(np.array([4.0, 1.0, 3.0]), np.array([0.0, 5.0, 1.0]))) == [1]


def test_decide_reports_the_pareto_front_of_the_medians():
    specs, pred = _three_ways()
    v = decide(specs, pred, Constraints(budget_ms=45))
    # latency 10/-2, 25/-1, 30/-0.1, 50/0: each faster plan is less accurate, all on the front
    assert [specs[i] for i in v["pareto"]] == ["ptq-int8", "prune:0.8+ptq-int8", "ptq-float16", "none"]


def test_under_the_accuracy_objective_a_near_tie_goes_to_the_faster_plan():
    """Accuracy bounds within ACCURACY_TIE_PP of the best are a tie ("accuracy, then latency"):
    the faster plan wins it; a plan further behind does not, however fast."""
    specs = ["none", "cluster:16+ptq-dynamic", "ptq-int8", "prune:0.9+ptq-int8"]
    gap = ACCURACY_TIE_PP
    pred = {"latency_ms": bands((82, 85, 91), (17, 18, 20), (12, 13, 15), (6, 7, 8)),
            "accuracy_delta_pp": bands((0, 0, 0), (-3.1, 0.5, 1.4), (-3.1 - gap + 0.05, 0.0, 1.7),
                                       (-3.1 - gap - 0.05, -1, 0))}
    v = decide(specs, pred, Constraints(budget_ms=50))
    assert v["decision"] == "compress" and specs[v["choice"]] == "ptq-int8"
    assert any("tie" in line and "cluster:16+ptq-dynamic" in line for line in v["explanation"])
    pred["accuracy_delta_pp"][2, 0] = -3.1 - gap - 0.01  # now behind by more than the tie
    v = decide(specs, pred, Constraints(budget_ms=50))
    assert specs[v["choice"]] == "cluster:16+ptq-dynamic" and not v["explanation"]


def test_a_tie_among_plans_does_not_override_keeping_a_feasible_model():
    """With the original feasible, the accuracy objective keeps it (no plan gains accuracy); the
    tie between compressed plans is then not the reason for anything, and the answer does not say it."""
    specs = ["none", "ptq-float16", "ptq-int8"]
    pred = {"latency_ms": bands((9, 10, 11), (8, 9, 10), (3, 4, 5)),
            "accuracy_delta_pp": bands((0, 0, 0), (-0.1, 0, 0.1), (-0.8, 0, 0.5))}
    v = decide(specs, pred, Constraints(budget_ms=20))
    assert v["decision"] == "keep" and v["choice"] == 0 and not v["explanation"]
    v = decide(specs, pred, Constraints(budget_ms=10.5))  # the original misses: the tie decides
    assert specs[v["choice"]] == "ptq-int8" and any("tie" in line for line in v["explanation"])


def test_a_feasible_family_that_lost_says_why_in_the_objectives_numbers():
    """A family with feasible plans that was not chosen names its best plan and the numbers it
    lost on: less accurate, as accurate but slower, or (objective latency) slower."""
    specs = ["none", "ptq-int8", "ptq-dynamic", "prune:0.5", "prune:0.8"]
    pred = {"latency_ms": bands((82, 85, 91), (9, 10, 12), (17, 18, 20), (60, 62, 66), (40, 44, 48)),
            "accuracy_delta_pp": bands((0, 0, 0), (-1.5, -0.5, 0.5), (-1.8, -0.4, 0.6), (-9, -5, -1),
                                       (-12, -8, -3))}
    v = decide(specs, pred, Constraints(budget_ms=70))
    assert specs[v["choice"]] == "ptq-int8"
    assert v["reasons"]["ptq-dynamic"] == ("feasible, as accurate but slower: ptq-dynamic -1.80 pp at the 90% bound "
                                           "and 18 ms, against -1.50 pp and 10 ms for ptq-int8")
    # the family's most accurate feasible member is named
    assert v["reasons"]["prune"] == ("feasible, less accurate: prune:0.5 -9.00 pp at the 90% bound, "
                                     "against -1.50 for ptq-int8")
    v = decide(specs, pred, Constraints(budget_ms=50))  # prune:0.5 misses it (p90 66 ms): prune:0.8 speaks
    assert v["reasons"]["prune"].startswith("feasible, less accurate: prune:0.8 -12.00 pp")
    v = decide(specs, pred, Constraints(budget_ms=70, objective="latency"))
    assert v["reasons"]["prune"] == "feasible, slower: prune:0.8 44 ms, against 10 ms for ptq-int8"
    # keeping the model: a compressed plan that gains too little says so against the original
    pred["latency_ms"][1] = (80, 83, 86)
    pred["latency_ms"][2:] = (84, 86, 88)
    v = decide(specs, pred, Constraints(budget_ms=100, objective="latency"))
    assert v["decision"] == "keep"
    assert v["reasons"]["ptq-int8"] == "feasible, gains under 5%: ptq-int8 83 ms, against 85 ms uncompressed"


def test_a_plan_outside_the_accuracy_tie_is_less_accurate_even_when_faster_than_the_choice():
    """The tie is measured from the most accurate plan: the choice (the fastest in the tie) may be
    up to a point behind it, and a faster plan just outside the tie lost on accuracy, not speed."""
    specs = ["none", "cluster:16+ptq-dynamic", "ptq-int8", "prune:0.5+ptq-int8"]
    pred = {"latency_ms": bands((82, 85, 91), (17, 18, 20), (12, 13, 15), (6, 7, 8)),
            "accuracy_delta_pp": bands((0, 0, 0), (-0.5, 0.5, 1.4), (-1.4, 0.0, 1.7), (-2.0, -1, 0))}
    v = decide(specs, pred, Constraints(budget_ms=50))
    assert specs[v["choice"]] == "ptq-int8"  # tied with cluster:16+ptq-dynamic (-0.5), and faster
    assert v["reasons"]["prune+ptq-int8"] == ("feasible, less accurate: prune:0.5+ptq-int8 -2.00 pp at the 90% "
                                              "bound, against -1.40 for ptq-int8")
    assert v["reasons"]["cluster+ptq-dynamic"].startswith("feasible, as accurate but slower: cluster:16+ptq-dynamic")
