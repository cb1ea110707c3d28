"""The human view of a recommendation prints accuracy changes as points to two decimals."""

from __future__ import annotations

from advisor.render import _band


def test_an_accuracy_change_near_zero_reads_as_zero_and_other_targets_keep_three_digits():
    assert _band({"p10": -1.2634, "p50": -7.1e-08, "p90": 1.7289}, "pp") == "+0.00 pp [-1.26–+1.73]"
    assert _band({"p10": -25.31, "p50": -9.18, "p90": -0.004}, "pp") == "-9.18 pp [-25.31–+0.00]"
    assert _band({"p10": 24.02, "p50": 28.47, "p90": 38.87}, "ms") == "28.5 ms [24–38.9]"
    assert _band(None, "pp") == "unknown" and _band(None, "ms") == "n/a"
