"""A post-training quantizer after a step that fine-tunes cannot win back accuracy: the plan's
change is composed from its parts wherever the trees' own answer is better than theirs."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.composition import ACCURACY, PlanBatch, post_training_split


@pytest.mark.parametrize("spec, expected", [
    ("distill:0.5+ptq-dynamic", ("distill:0.5", "ptq-dynamic")),
    ("prune:0.8+ptq-int8", ("prune:0.8", "ptq-int8")),
    ("distill:0.5+prune:0.8+ptq-int8", ("distill:0.5+prune:0.8", "ptq-int8")),
    ("cluster:16@large+ptq-dynamic", ("cluster:16@large", "ptq-dynamic")),
    ("ptq-int8", None),                 # nothing before the quantizer
    ("qat-int8", None),                 # QAT trains: it is not post-training
    ("prune:0.5+qat-int8", None),
    ("distill:0.5", None),
    ("none", None),
])
def test_post_training_split(spec, expected):
    assert post_training_split(spec) == expected


# The trees' answers, made up: the whole plan lands in the quantizer's branch (nothing lost).
TREES = {"distill:0.5+ptq-float16": (-1.0, 0.0, 1.0), "distill:0.5": (-15.0, -9.0, -3.0),
         "ptq-float16": (-0.3, 0.0, 0.4), "prune:0.8+ptq-int8": (-30.0, -20.0, -10.0),
         "prune:0.8": (-12.0, -8.0, -4.0), "ptq-int8": (-2.0, -0.5, 0.5), "none": (0.0, 0.0, 0.0),
         "lowrank:0.5+ptq-int8": (np.nan, np.nan, np.nan), "lowrank:0.5": (np.nan, np.nan, np.nan)}


def test_a_batch_composes_only_where_the_parts_say_worse():
    specs = ["distill:0.5+ptq-float16", "prune:0.8+ptq-int8", "ptq-int8", "lowrank:0.5+ptq-int8", "none"]
    batch = PlanBatch.of(specs)
    # one batch: the plans asked, then the parts they lack, once each
    assert list(batch.plans) == specs + ["distill:0.5", "ptq-float16", "prune:0.8", "lowrank:0.5"]
    acc = np.array([TREES[p] for p in batch.plans], dtype=float)
    out = batch.compose({ACCURACY: acc, "latency": np.tile([1.0, 2.0, 3.0], (len(batch.plans), 1))})
    assert out["latency"].shape == (5, 3) and out[ACCURACY].shape == (5, 3)
    lo, mid, hi = out[ACCURACY][0]
    assert mid == pytest.approx(-9.0)  # -9.0 + 0.0: the quantizer wins nothing back
    assert mid - lo == pytest.approx(np.hypot(6.0, 0.3)) and hi - mid == pytest.approx(np.hypot(6.0, 0.4))
    np.testing.assert_allclose(out[ACCURACY][1], TREES["prune:0.8+ptq-int8"])  # the trees were already worse
    np.testing.assert_allclose(out[ACCURACY][2], TREES["ptq-int8"])
    assert np.isnan(out[ACCURACY][3]).all()  # unknown stays unknown
    np.testing.assert_allclose(out[ACCURACY][4], 0.0)


def test_without_an_accuracy_model_nothing_changes():
    batch = PlanBatch.of(["distill:0.5+ptq-int8"])
    out = batch.compose({"latency": np.ones((len(batch.plans), 3))})
    assert set(out) == {"latency"} and out["latency"].shape == (1, 3)
