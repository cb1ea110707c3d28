"""Layers outside what the training data timed (advisor.coverage): recorded at training, named in answers."""

from __future__ import annotations

import json

from test_api import bundle_dir  # noqa: F401  (a module fixture: the real small bundle)
from test_predictor import synthetic_rows

from advisor.api import Advisor
from advisor.coverage import layer_coverage, outside, warning
from advisor.profile import LayerProfile, ModelProfile


def _net(name: str, *layers: LayerProfile) -> ModelProfile:
    return ModelProfile(name, "user", (32, 32, 3), "float32", 10, "image", layers)


CONV = LayerProfile("c", "Conv2D", 32 * 32 * 16 * 27, 448, ((32, 32, 3),), (32, 32, 16), 3, 1, 1)
BIG_CONV = LayerProfile("big", "Conv2D", 64 * 64 * 64 * 16 * 9, 9_280, ((64, 64, 16),), (64, 64, 64), 3, 1, 1)
DENSE = LayerProfile("d", "Dense", 16 * 10, 170, ((16,),), (10,))
POOL = LayerProfile("p", "GlobalAveragePooling2D", 0, 0, ((32, 32, 16),), (16,))


def test_coverage_counts_networks_and_the_largest_layer_of_each_type():
    cov = layer_coverage([_net("a", CONV, POOL, DENSE), _net("b", CONV, CONV, DENSE)])
    assert cov["Conv2D"] == {"networks": 2, "max_macs": float(CONV.macs), "max_positions": 32.0 * 32}
    assert cov["Dense"]["networks"] == 2 and cov["GlobalAveragePooling2D"]["networks"] == 1
    assert "ReLU" not in cov  # free layers run nothing, so nothing of theirs was timed
    # A separable convolution's halves run a depthwise and a 1x1 convolution's kernels.
    sep = LayerProfile("s", "SeparableConv2D", 32 * 32 * 16 * 9 + 32 * 32 * 16 * 8, 16 * 9 + 16 * 8 + 8,
                       ((32, 32, 16),), (32, 32, 8), 3, 1, 1)
    assert layer_coverage([_net("s", sep)]).keys() == {"DepthwiseConv2D", "Conv2D"}
    dw = LayerProfile("dw", "DepthwiseConv2D", 32 * 32 * 16 * 9, 16 * 9, ((32, 32, 16),), (32, 32, 16), 3, 1, 16)
    assert outside(_net("s", sep), layer_coverage([_net("a", CONV, dw)])) == []


def test_outside_names_unknown_types_and_layers_far_beyond_the_timed_ones():
    cov = layer_coverage([_net("a", CONV, POOL, DENSE)])
    assert outside(_net("same", CONV, POOL, DENSE), cov) == []
    custom = LayerProfile("warp", "SpatialTransformer", 0, 0, ((32, 32, 16),), (32, 32, 16))
    found = outside(_net("user", CONV, custom, BIG_CONV, POOL, DENSE), cov)
    assert [(o.layer, o.type) for o in found] == [("warp", "SpatialTransformer"), ("big", "Conv2D")]
    assert found[0].why == "a layer type no training network had"
    assert found[1].why.startswith("37.7 M MACs, the largest timed 0.442 M")
    # Many more positions than any timed layer of the type, with no more MACs: also outside.
    long = LayerProfile("long", "Conv2D", CONV.macs, 448, ((256, 256, 3),), (256, 256, 1), 1, 1, 1)
    assert [o.why for o in outside(_net("l", long), cov)] == [
        "65,536 positions (pixels or tokens), the most timed 1,024"]
    assert outside(_net("user", custom), None) == [] and outside(_net("user", custom), {}) == []


def test_the_warning_line_names_a_few_and_counts_the_rest():
    assert warning([]) is None
    cov = layer_coverage([_net("a", DENSE)])
    found = outside(_net("u", *(LayerProfile(f"x{i}", "Odd", 0, 0, ((4,),), (4,)) for i in range(5))), cov)
    line = warning(found)
    assert line.startswith("warning: 5 layer(s) outside what the training data timed")
    assert "x0 (Odd: a layer type no training network had); x1" in line and "; and 2 more;" in line
    assert line.endswith("check it with --verify")


def test_the_bundle_records_its_coverage_and_answers_name_what_lies_outside(bundle_dir, tmp_path, capsys):  # noqa: F811
    advisor = Advisor.load(bundle_dir)
    cov = advisor.bundle.card["training_data"]["layer_types"]
    assert cov and all(v["networks"] > 0 for v in cov.values())
    # A network the bundle was trained on, and the same with one layer of a type none of them had.
    _, profiles = synthetic_rows(devices=("sim-x86", "sim-arm"))
    trained = next(iter(profiles.values())).to_dict()
    (tmp_path / "trained.json").write_text(json.dumps(trained))
    inside = advisor.recommend(str(tmp_path / "trained.json"), budget_ms=1e6)
    assert not [line for line in inside.explanation if "outside what the training data timed" in line]
    last = trained["layers"][-1]
    odd = {**trained, "layers": [*trained["layers"], {**last, "name": "warp", "type": "SpatialTransformer", "macs": 0,
                                                      "params": 0, "input_shapes": [last["output_shape"]]}]}
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    rec = advisor.recommend(str(tmp_path / "odd.json"), budget_ms=1e6)
    lines = [line for line in rec.explanation if "outside what the training data timed" in line]
    assert lines == ["warning: 1 layer(s) outside what the training data timed, so their cost is extrapolated and "
                     "the latency may be off by more than its band: warp (SpatialTransformer: a layer type no "
                     "training network had); check it with --verify"]
    assert lines[0] in advisor.plan(str(tmp_path / "odd.json"), "ptq-int8").explanation
    from advisor.cli import main

    assert main(["predict", "--model", str(tmp_path / "odd.json"), "--technique", "ptq-int8", "--bundle",
                 str(bundle_dir), "--json"]) in (0, None)
    assert lines[0] in json.loads(capsys.readouterr().out)["notes"]
