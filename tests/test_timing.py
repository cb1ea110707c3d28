"""The timing rule and interleaving, on a fake clock (no wall-clock assertions)."""

import statistics

import pytest

from measure import timing


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make_runner(clock, durations):
    it = iter(durations)

    def run():
        clock.t += next(it)
    return run


def test_ci_halfwidth_matches_formula():
    xs = [10.0, 11.0, 9.0, 10.5, 9.5]
    expected = 2.776 * statistics.stdev(xs) / len(xs) ** 0.5 / statistics.mean(xs)
    assert timing.ci95_halfwidth_rel(xs) == pytest.approx(expected)
    assert timing.ci95_halfwidth_rel([1.0]) == float("inf")


def test_percentile_matches_numpy_linear():
    import numpy as np

    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0, 10, 50, 90, 100):
        assert timing.percentile(xs, q) == pytest.approx(np.percentile(xs, q))


def test_steady_timings_meet_rule_and_stop_at_min_rounds():
    clock = FakeClock()
    a = make_runner(clock, [0.010] * 10_000)
    b = make_runner(clock, [0.020] * 10_000)
    policy = timing.TimingPolicy(warmup=2, min_rounds=3, round_s=0.1)
    out = timing.interleaved([("a", a), ("b", b)], policy, clock=clock)
    assert len(out["a"]["round_medians_ms"]) == 3
    assert out["a"]["stats"]["rule_met"] and out["b"]["stats"]["rule_met"]
    assert out["b"]["ratio_to_first"] == pytest.approx(2.0)
    assert out["a"]["stats"]["median"] == pytest.approx(10.0)
    assert len(out["a"]["raw_ms"]) == out["a"]["stats"]["runs"]  # raw times kept


def test_noisy_timings_hit_cap_and_report_rule_not_met():
    clock = FakeClock()
    noisy = [0.001, 0.1] * 100_000  # bimodal: the interval never tightens within the cap
    policy = timing.TimingPolicy(warmup=1, min_runs=2, max_runs=50, min_rounds=2, max_rounds=3, round_s=0.0)
    out = timing.interleaved([("x", make_runner(clock, noisy))], policy, clock=clock)
    assert not out["x"]["stats"]["rule_met"]
    assert out["x"]["stats"]["runs"] <= 50


def test_drift_cancels_in_ratio():
    """A machine that slows down 2x halfway: the ratio from the same rounds stays 1.5."""
    clock = FakeClock()
    state = {"n": 0}

    def slow_factor():
        state["n"] += 1
        return 1.0 if state["n"] < 130 else 2.0

    def a():
        clock.t += 0.010 * slow_factor()

    def b():
        clock.t += 0.015 * slow_factor()

    policy = timing.TimingPolicy(warmup=1, min_rounds=8, max_rounds=8, round_s=0.2)
    out = timing.interleaved([("a", a), ("b", b)], policy, clock=clock)
    assert out["a"]["stats"]["round_spread_rel"] > 0.5  # the drift is visible
    assert out["b"]["ratio_to_first"] == pytest.approx(1.5, rel=0.05)


def test_impossible_policy_rejected():
    with pytest.raises(ValueError):
        timing.TimingPolicy(rel_ci=0)
    with pytest.raises(ValueError):
        timing.TimingPolicy(min_runs=10, max_runs=5)


def test_timing_and_agent_are_python36_and_stdlib():
    import ast
    import sys
    from pathlib import Path

    root = Path(timing.__file__).parent
    allowed = {"math", "statistics", "time", "json", "os", "resource", "sys", "importlib", "numpy",
               "measure", "advisor", "energy", "fingerprint", "timing"}
    for name in ("timing.py", "agent.py"):
        tree = ast.parse((root / name).read_text(), feature_version=(3, 6))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(mods) <= allowed, (name, mods)
    assert sys.version_info >= (3, 6)
