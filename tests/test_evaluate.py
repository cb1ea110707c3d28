"""Held-out evaluation, on synthetic rows (mechanics and shape; never reported as measurements)."""

from __future__ import annotations

import numpy as np
import pytest
from test_predictor import FAST, synthetic_rows

from advisor.errors import OptionError
from advisor.evaluate import evaluate, flops_proxy, summary_lines
from advisor.predictor import prepare

RATIO_KEYS = {"within_5pct", "within_10pct", "within_25pct", "mape", "spearman", "interval_coverage_80", "n"}


def _check_shape(result: dict, split: str) -> None:
    assert set(result) - {"notes"} == {"split", "targets", "baselines", "by_plan", "by_family", "by_device"}
    assert set(result["by_plan"]) == {"whole-model", "structural", "layer-wise"}
    assert result["split"] == split
    assert set(result["targets"]) == {"latency", "size", "energy", "accuracy_drop"}
    for name in ("latency", "size", "energy"):
        assert set(result["targets"][name]) == RATIO_KEYS
    assert set(result["targets"]["accuracy_drop"]) == {"mae_pp", "within_1pp", "n"}
    assert set(result["baselines"]["flops_proxy"]["latency"]) == {"within_10pct", "mape"}


def test_family_split_holds_out_families_and_beats_the_flops_proxy():
    rows, profiles = synthetic_rows(per_family=3, techniques=("ptq-int8", "prune:0.5"))
    result = evaluate(rows, profiles, split="family", params=FAST, folds=4)
    _check_shape(result, "family")
    lat = result["targets"]["latency"]
    assert lat["n"] == len(rows)  # every row predicted once, from a model that never saw its family
    proxy = result["baselines"]["flops_proxy"]["latency"]
    assert lat["mape"] < proxy["mape"]
    assert lat["within_25pct"] >= proxy["within_10pct"]
    assert 0.0 <= lat["interval_coverage_80"] <= 1.0 and -1.0 <= lat["spearman"] <= 1.0
    assert result["targets"]["size"]["within_5pct"] > 0.9
    assert result["targets"]["energy"]["n"] == 0 and any("energy" in n for n in result["notes"])
    acc = result["targets"]["accuracy_drop"]
    assert acc["n"] == int((rows["accuracy_delta_pp"].notna()).sum()) and acc["mae_pp"] < 1.5
    assert any("latency" in line for line in summary_lines(result))
    # per family: every held-out family scored on its own rows, the counts adding up
    assert set(result["by_family"]) == set(rows["family"])
    assert sum(m["latency"]["n"] for m in result["by_family"].values()) == lat["n"]
    assert any(line.strip().startswith("latency by family") for line in summary_lines(result))
    # per device: the same held-out rows, split by the device that measured them
    assert set(result["by_device"]) == set(rows["device"])
    assert sum(m["latency"]["n"] for m in result["by_device"].values()) == lat["n"]
    assert any(line.strip().startswith(str(rows["device"].iloc[0]) + ":") for line in summary_lines(result))


def test_random_split_and_energy():
    rows, profiles = synthetic_rows(devices=("sim-arm",), techniques=("ptq-int8",))
    result = evaluate(rows, profiles, split="random", params=FAST, folds=3, seed=1)
    _check_shape(result, "random")
    assert result["targets"]["energy"]["n"] == len(rows)
    assert result["targets"]["latency"]["within_25pct"] > 0.5


def test_device_split_with_one_device_says_so():
    rows, profiles = synthetic_rows(techniques=("ptq-int8",))
    result = evaluate(rows, profiles, split="device", params=FAST)
    _check_shape(result, "device")
    assert result["targets"]["latency"]["n"] == 0 and result["targets"]["latency"]["mape"] is None
    assert "needs at least two devices" in result["notes"][0]


def test_device_split_leaves_each_device_out():
    rows, profiles = synthetic_rows(devices=("sim-x86", "sim-arm"), techniques=("ptq-int8",))
    result = evaluate(rows, profiles, split="device", params=FAST)
    _check_shape(result, "device")
    assert result["targets"]["latency"]["n"] == len(rows)


def test_folds_too_small_to_train_are_noted_not_fatal():
    rows, profiles = synthetic_rows(families=("s-plain", "s-mobile"), per_family=2, techniques=("ptq-int8",))
    result = evaluate(rows, profiles, split="family", params={**FAST, "min_rows": 50})
    _check_shape(result, "family")
    assert result["targets"]["latency"]["n"] == 0
    assert any("not evaluated" in n for n in result["notes"])


def test_flops_proxy_uses_the_training_rows_of_the_same_device_and_technique():
    rows, profiles = synthetic_rows(techniques=("ptq-int8",))
    data = prepare(rows, profiles)
    guess = flops_proxy(data, data)
    macs = rows["macs"].to_numpy(dtype=float)
    for tech in ("none", "ptq-int8"):
        m = (rows["technique"] == tech).to_numpy()
        per_mac = np.median(rows["latency_ms_median"].to_numpy()[m] / macs[m])
        np.testing.assert_allclose(guess[m], macs[m] * per_mac)


def test_unknown_split_is_an_option_error():
    rows, profiles = synthetic_rows()
    with pytest.raises(OptionError, match="unknown split 'model'.*family, random, device"):
        evaluate(rows, profiles, split="model")


def test_kernel_probes_train_every_fold_and_are_never_scored():
    rows, profiles = synthetic_rows(per_family=3, techniques=("ptq-int8",))
    probe_family = rows["family"].iloc[0]
    rows.loc[rows["family"] == probe_family, "family"] = "sampled-conv_kernel"
    probes = int((rows["family"] == "sampled-conv_kernel").sum())
    assert probes > 0
    for split in ("family", "random"):
        result = evaluate(rows, profiles, split=split, params=FAST, folds=3)
        assert result["targets"]["latency"]["n"] == len(rows) - probes
