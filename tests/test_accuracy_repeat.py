"""bench/accuracy_repeat.py pairs two draws of one configuration, and only those."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("accuracy_repeat")


def row(model, technique, delta, top1, *, seed=0, device="local:a", dataset="digits", order=2, at="2026-12-07"):
    key = {"dataset": dataset, "finetune": f"dataset:{dataset}" if technique.startswith("prune") else "none",
           "threads": 1, "data_order": order, "seed": seed or None}
    return {"model": model, "technique": technique, "accuracy_delta_pp": delta, "top1": top1, "status": "ok",
            "source": "measured", "dataset": dataset, "finetune": key["finetune"], "device": device,
            "measured_at": at, "settings_json": json.dumps({**key, "policy": {"min_runs": 3}})}


def test_pairs_are_one_configuration_under_two_seeds(bench):
    rows = pd.DataFrame([
        row("sampled:plain:1", "prune:0.8", -10.0, 0.80),
        row("sampled:plain:1", "prune:0.8", -4.0, 0.86, seed=1, device="local:b", order=None),
        row("sampled:plain:1", "ptq-int8", 0.5, 0.905),
        row("sampled:plain:1", "ptq-int8", 0.0, 0.91, seed=1),
        row("sampled:plain:1", "none", 0.0, 0.90, seed=1),  # the original: no change to compare
        row("sampled:plain:2", "prune:0.8", -3.0, 0.80),  # no second draw
        row("sampled:plain:3", "prune:0.8", -1.0, 0.90, dataset="mnist", order=None),  # class-sorted fine-tuning
        row("sampled:plain:3", "prune:0.8", -9.0, 0.90, dataset="mnist", seed=1),
        row("sampled:plain:4", "ptq-int8", 1.0, 0.90, device="local:a"),  # one seed, two machines
        row("sampled:plain:4", "ptq-int8", 3.0, 0.90, device="local:b"),
    ])
    other, same = bench.pairs(rows)
    assert sorted(zip(other["technique"], other["delta_a"], other["delta_b"])) == [
        ("prune:0.8", -10.0, -4.0), ("ptq-int8", 0.5, 0.0)]
    assert list(zip(same["model"], same["delta_a"], same["delta_b"])) == [("sampled:plain:4", 1.0, 3.0)]
    result = bench.compare(rows)
    every = result["other_seed"][0]
    assert every["n"] == 2 and every["mean_abs_diff_pp"] == pytest.approx(3.25)
    assert every["within_1pp"] == 0.5
    # the two draws' references: 0.80 + 0.10 against 0.86 + 0.04, and 0.905 - 0.005 against 0.91 - 0.0
    assert every["reference_top1_diff_pp"] == pytest.approx(0.5)
