"""bench/latency_replay.py: the latency side alone gives what `advisor evaluate` scores, and its
summary splits a compressed row's error into its baseline's and its ratio's (synthetic rows:
mechanics, never reported as measurements)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_bench
from test_predictor import FAST, synthetic_rows

from advisor.evaluate import evaluate


@pytest.fixture(scope="module")
def bench():
    return load_bench("latency_replay")


def test_the_replay_median_is_the_evaluations(bench):
    rows, profiles = synthetic_rows(per_family=3, techniques=("ptq-int8", "prune:0.5"))
    entries: list[dict] = []
    evaluate(rows, profiles, split="family", params=FAST, predictions=entries)
    want = {e["config_id"]: e["p50"] for e in entries if e["target"] == "latency"}
    got = bench.replay(rows, profiles, None, seed=0, params=FAST)
    assert len(got) == len(want) > 0
    final = {g[0]: g[bench.COLUMNS.index("final")] for g in got}
    assert set(final) == set(want)
    assert np.allclose([final[k] for k in want], list(want.values()), rtol=1e-9)
    # every stage is a positive latency, and the baseline and ratio parts multiply to the whole
    for g in got:
        row = dict(zip(bench.COLUMNS, g))
        assert min(row["linear"], row["layers"], row["final"]) > 0
        assert row["base_final"] * row["ratio_final"] == pytest.approx(row["final"])


def _row(bench, cid, base, technique, measured, final, ratio=float("nan"), device="local:a"):
    values = {"config_id": cid, "baseline_config_id": base, "family": "f", "device": device, "plan": "whole-model",
              "technique": technique, "fold": 0, "measured": measured, "measured_ratio": ratio, "linear": measured * 2,
              "layers": measured, "final": final, "base_final": final, "ratio_final": 1.0}
    return tuple(values[c] for c in bench.COLUMNS)


def test_summary_splits_a_compressed_rows_error(bench):
    got = [_row(bench, "n1", None, "none", 1.0, 1.05),                   # baseline within 10%
           _row(bench, "c1", "n1", "ptq-int8", 0.5, 0.6, ratio=0.5),     # 20% off: its ratio is 14% off
           _row(bench, "n2", None, "none", 2.0, 2.5),                    # baseline 25% off
           _row(bench, "c2", "n2", "ptq-int8", 1.0, 1.25, ratio=0.5)]    # its ratio exact
    lines = bench.summary(got)
    assert lines[2] == "| every network latency | 4 | 0.0% | 100.0% | **25.0%** | 100.0% | 18.8% |"
    assert lines[-1].endswith("(2): the row within ±10% 0.0%, its baseline's prediction 50.0%, its ratio to it 50.0%.")
