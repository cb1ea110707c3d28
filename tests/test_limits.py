"""Plans the conversion tools cannot apply are left out of the advice and refused by measurement,
in one line, instead of crashing the process in native code."""

from __future__ import annotations

import pytest
from test_api import advisor, bundle_dir  # noqa: F401 - module fixtures: a real bundle from synthetic rows

from advisor.limits import blocked
from advisor.lookup import resolve_profile


def test_full_integer_quantization_of_a_gru_is_blocked_and_nothing_else():
    gru, lstm = resolve_profile("gru_text"), resolve_profile("lstm_text")
    for spec in ("ptq-int8", "prune:0.5+ptq-int8", "distill:0.5+ptq-int8"):
        why = blocked(gru, spec)
        assert why is not None and "GRU" in why and "\n" not in why
    for spec in ("none", "ptq-dynamic", "ptq-float16", "qat-int8", "prune:0.5"):
        assert blocked(gru, spec) is None
    assert blocked(lstm, "ptq-int8") is None


def test_the_advice_leaves_blocked_plans_out_and_says_why(advisor):  # noqa: F811
    rec = advisor.recommend("gru_text", budget_ms=1000, objective="latency")
    considered = {a["technique"] for a in rec.alternatives} | {p["technique"] for p in rec.pareto}
    assert rec.technique is None or "ptq-int8" not in rec.technique
    assert not any("ptq-int8" in spec for spec in considered)
    assert any(line.startswith("left out") and "GRU" in line for line in rec.explanation)
    other = advisor.recommend("lstm_text", budget_ms=1000, objective="latency")
    assert not any(line.startswith("left out") for line in other.explanation)


@pytest.mark.tf
def test_measurement_refuses_a_blocked_plan_and_measures_the_others(keras, tmp_path):
    from advisor.errors import UnsupportedError
    from measure.devices import LocalDevice
    from measure.runner import MeasureSettings, measure_many

    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.GRU(4)(keras.layers.Embedding(20, 4)(tokens))
    path = tmp_path / "gru.keras"
    keras.Model(tokens, keras.layers.Dense(2)(x)).save(path)
    fast = MeasureSettings(energy=False, idle_s=0.0, min_runs=3, time_cap_s=2.0, min_rounds=2, max_rounds=3)
    int8, dynamic = measure_many(str(path), ["ptq-int8", "ptq-dynamic"], LocalDevice(), fast)
    assert isinstance(int8, UnsupportedError) and "GRU" in str(int8)
    assert dynamic.row["status"] == "ok"
