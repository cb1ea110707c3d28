"""Layer selectors, analytic structural transforms and the features of layer-wise and structural plans
(TensorFlow-free: real zoo profiles shipped in advisor/data/profiles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from advisor import features as F
from advisor import layers as L
from advisor.api import profile_for
from advisor.errors import SpecError
from advisor.techniques import Pipeline


@pytest.fixture(scope="module")
def mobilenet():
    return profile_for("mobilenet_v2@96")


def test_selectors_pick_the_layers_they_name(mobilenet):
    names = [ly.name for ly in L.weighted(mobilenet)]
    assert L.select(mobilenet, "first") == {names[0]}
    assert L.select(mobilenet, "last") == {names[-1]}
    assert L.select(mobilenet, "mid") == set(names[1:-1])
    assert L.select(mobilenet, "first,last") | L.select(mobilenet, "mid") == set(names)
    assert L.select(mobilenet, "l2-4") == set(names[2:5])
    depthwise = L.select(mobilenet, "depthwise")
    assert depthwise and all(ly.type == "DepthwiseConv2D" for ly in mobilenet.layers if ly.name in depthwise)
    large = L.select(mobilenet, "large")
    held = sum(ly.params for ly in L.weighted(mobilenet) if ly.name in large)
    assert held >= 0.5 * sum(ly.params for ly in L.weighted(mobilenet))
    assert large.isdisjoint(L.select(mobilenet, "small"))
    assert not any(ly.type == "BatchNormalization" for ly in L.weighted(mobilenet))


@pytest.mark.parametrize("bad,match", [("prune:0.5@", "empty layer selector"), ("prune:0.5@everything", "unknown"),
                                       ("prune:0.5@l5-2", "ends before"), ("ptq-int8@mid", "whole model"),
                                       ("distill:0.5@dense", "whole model"), ("lowrank:0.3+lowrank:0.5@dense",
                                                                              "at most one lowrank")])
def test_bad_layer_specs_are_refused_with_the_reason(bad, match):
    with pytest.raises(SpecError, match=match):
        Pipeline.parse(bad)


def test_the_first_step_that_selects_a_layer_takes_it(mobilenet):
    pipeline = Pipeline.parse("prune:0.9@large+prune:0.5")
    taken = L.assign(mobilenet, list(pipeline.steps))
    large = L.select(mobilenet, "large")
    assert all(taken[n].sparsity == 0.9 for n in large)
    assert all(step.sparsity == 0.5 for n, step in taken.items() if n not in large)
    assert len(taken) == len(L.weighted(mobilenet))


def test_factorisation_keeps_shapes_and_cuts_work(mobilenet):
    out = L.factorise(mobilenet, 0.25)
    assert out.params < mobilenet.params and out.macs < mobilenet.macs
    assert [ly.output_shape for ly in out.layers if not ly.name.endswith("_lr1")] == \
           [ly.output_shape for ly in mobilenet.layers]
    first = next(ly for ly in out.layers if ly.name.endswith("_lr1"))
    second = next(ly for ly in out.layers if ly.name == first.name[:-4])
    assert second.input_shapes == (first.output_shape,)
    assert L.factorise(mobilenet, 0.999).params == mobilenet.params  # a rank that saves nothing changes nothing


def test_student_width_scales_work_quadratically_and_keeps_the_classifier(mobilenet):
    half = L.widen(mobilenet, 0.5)
    assert 0.2 < half.params / mobilenet.params < 0.45 and 0.2 < half.macs / mobilenet.macs < 0.4
    assert half.layers[-1].output_shape == mobilenet.layers[-1].output_shape
    assert L.widen(mobilenet, 1.0) == mobilenet


def test_layerwise_features_cover_what_the_selectors_cover(mobilenet):
    dense = L.select(mobilenet, "dense")
    share = sum(ly.params for ly in L.weighted(mobilenet) if ly.name in dense) / \
        sum(ly.params for ly in L.weighted(mobilenet))
    f = F.layerwise_features(mobilenet, Pipeline.parse("prune:0.8@dense"))
    assert f["cover_prune"] == pytest.approx(share)
    assert f["sparsity"] == pytest.approx(0.8 * share)
    whole = F.technique_features("prune:0.8")
    assert whole["cover_prune"] == 1.0 and whole["sparsity"] == 0.8
    q = F.layerwise_features(mobilenet, Pipeline.parse("qat-int8@mid"))
    assert 8 < q["eff_weight_bits"] < 32 and 0 < q["cover_quantize"] < 1


def test_structural_plans_are_featurised_as_the_network_they_build(mobilenet):
    dev = F.device_features({}, 1)
    X = F.feature_matrix(mobilenet, ["none", "distill:0.5", "distill:0.5+ptq-int8", "lowrank:0.25"], dev)
    assert X[1, F.INDEX["params"]] == L.widen(mobilenet, 0.5).params
    assert X[3, F.INDEX["params"]] == L.factorise(mobilenet, 0.25).params
    np.testing.assert_array_equal(X[1, F.PROFILE_BLOCK], X[2, F.PROFILE_BLOCK])
    assert list(F.is_baseline(X)) == [True, True, False, True]  # float networks: their latency is their own
    assert list(F.is_original(X)) == [True, False, False, False]  # only the original changes no accuracy
    np.testing.assert_array_equal(F.as_baseline(X[2:3]), X[1:2])
    assert X[1, F.INDEX["width"]] == 0.5 and X[1, F.INDEX["structure_params_ratio"]] < 0.5
    with pytest.raises(ValueError, match="ModelProfile"):
        F.feature_matrix(F.profile_vector(mobilenet), ["distill:0.5"], dev)


def test_rows_of_structural_plans_get_the_same_features_as_candidates(mobilenet):
    dev = F.device_features({"logical_cpus": 2, "machine": "x86_64", "accelerator": None}, 1)
    specs = ["lowrank:0.5@conv+ptq-dynamic", "prune:0.9@large+prune:0.5", "distill:0.75"]
    rows = pd.DataFrame({"profile_digest": [mobilenet.digest] * 3, "technique": specs, "threads": [1] * 3,
                         "logical_cpus": [2] * 3, "machine": ["x86_64"] * 3, "accelerator": [None] * 3,
                         "source": ["measured"] * 3})
    expected = F.feature_matrix(mobilenet, specs, dev)
    np.testing.assert_allclose(F.rows_matrix(rows, {mobilenet.digest: mobilenet}), expected)


def test_layer_wise_features_are_the_same_in_every_process():
    """Sums over a plan's layers run in the network's order: a set's order varies with string
    hashing between processes, and the features' last digits with it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    # A sampled residual network of the training data whose middle layers' sparsity sum showed it.
    path = Path(__file__).resolve().parent.parent / "training_data" / "profiles" / "8d5770265edc488f.json"
    code = ("from advisor import features as F; from advisor.profile import ModelProfile; "
            f"p = ModelProfile.load({str(path)!r}); "
            "print(repr(F.layerwise_features(p, F.Pipeline.parse('prune:0.8@mid'))['sparsity']))")

    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert len(outs) == 1, outs
