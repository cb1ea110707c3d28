"""Published figures become labelled dataset rows: mapped where they fit, skipped with a reason."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from advisor import features as F
from advisor import published
from advisor.cli_data import register
from advisor.cli_kit import App
from advisor.errors import DatasetError
from advisor.predictor import _select_accuracy, prepare
from advisor.published import Skip, identify, ingest, map_technique
from advisor.store import Store, validate_row
from advisor.techniques import Pipeline

SHARED_PUBLISHED = Path(__file__).resolve().parent.parent.parent / "shared" / "published"

TFMOT_HEADER = ["source", "model", "dataset", "task", "device", "runtime", "technique", "metric",
                "baseline_value", "compressed_value", "unit", "notes"]
MORE_HEADER = ["source", "model", "dataset", "task", "device", "runtime", "technique", "setting", "metric",
               "baseline_value", "compressed_value", "unit", "notes"]
TINY_TFMOT = [
    # mapped: a fraction and a percent figure
    ["doc-a", "mobilenet_v2_1.0_224", "imagenet", "image-classification", "pixel2", "tflite", "ptq-dynamic",
     "top1", "0.719", "0.637", "fraction", "hybrid"],
    ["doc-b", "inception_v3", "imagenet", "image-classification", "", "tflite", "prune:0.5", "Top-1",
     "78.1", "78.0", "percent", ""],
    # skipped, one reason each
    ["doc-a", "mobilenet_v2_1.0_224", "imagenet", "image-classification", "pixel2", "tflite", "ptq-dynamic",
     "latency", "89", "98", "ms", ""],
    ["doc-c", "mobilenet_v1", "imagenet", "image-classification", "", "tflite", "cluster:16 (last 3 Conv2D)",
     "top1", "70.976", "70.294", "percent", "selective"],
    ["doc-b", "gnmt_en_de", "wmt16", "translation", "", "tensorflow", "prune:0.8", "bleu", "26.77", "26.86",
     "bleu", ""],
    ["doc-b", "inception_v3", "imagenet", "image-classification", "", "tflite", "prune:0.5", "top1",
     "78.1", "78.0", "bleu", "wrong unit"],
    ["doc-b", "alexnet", "imagenet", "image-classification", "", "tflite", "prune:0.5", "top1",
     "57.1", "56.0", "percent", "not in NETWORKS"],
    ["doc-b", "inception_v3", "imagenet", "image-classification", "", "tflite", "prune:0.75", "top1",
     "n/a", "76.1", "percent", ""],
]
TINY_MORE = [
    ["hosted | commit", "Mobilenet_V1_0.25_224", "ImageNet", "image classification", "Pixel 3", "TensorFlow Lite",
     "8-bit quantized model (hosted '_quant' variant)", "float vs quant", "top1_accuracy", "49.7", "48.2", "%", ""],
    ["coreml | commit", "ResNet50", "ImageNet", "image classification", "n/a", "coremltools",
     "8-bit linear quantization: Weight & activation (training time, W8A8 per-channel symmetric)", "int8",
     "top1_accuracy", "76.14", "76.80 ± 0.05", "%", ""],
    ["coreml | commit", "MobileNetv2-1.0", "ImageNet", "image classification", "n/a", "coremltools",
     "palettization (weight clustering) K-Means (post-training)", "4 bit", "top1_accuracy", "71.86", "70.0", "%",
     ""],
    ["coreml | commit", "MobileNetv2-1.0", "ImageNet", "image classification", "n/a", "coremltools",
     "unstructured magnitude pruning (MagnitudePruner)", "sparsity 75%", "top1_accuracy", "71.86", "69.0", "%",
     ""],
    ["int16 | doc", "MobileNetV1", "not stated", "image classification", "not stated", "TensorFlow Lite",
     "post-training full-integer quantization (16x8)", "int8 weights, int16 activations", "top1_accuracy",
     "0.7062", "0.6936", "fraction", ""],
    ["hosted | commit", "Mobilenet_V1_0.25_224", "ImageNet", "image classification", "Pixel 3", "TensorFlow Lite",
     "8-bit quantized model (hosted '_quant' variant)", "float vs quant", "top5_accuracy", "74.2", "73.5", "%", ""],
]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> list[Path]:
    return [_write(tmp_path / "tfmot.csv", TFMOT_HEADER, TINY_TFMOT),
            _write(tmp_path / "more.csv", MORE_HEADER, TINY_MORE)]


@pytest.fixture(scope="module")
def published_csvs() -> list[Path]:
    """The project's published CSVs; skips where ../shared/published is absent (outside the workspace)."""
    paths = published.default_paths(SHARED_PUBLISHED)
    if not paths:
        pytest.skip(f"../shared/published not present at {SHARED_PUBLISHED} (only in the project's workspace)")
    return paths


def _by(rows: list[dict], **match: object) -> dict:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


# ---------------------------------------------------------------------------------------------
# Mapping rules.


@pytest.mark.parametrize(("technique", "setting", "spec"), [
    ("ptq-dynamic", "", "ptq-dynamic"),
    ("prune:0.50", "", "prune:0.5"),
    ("prune-2:4", "", "prune-2:4"),
    ("8-bit quantized model (hosted '_quant' variant)", "float model vs 'X_quant' model", "qat-int8"),
    ("post-training full-integer quantization", "int8 weights, int8 activations", "ptq-int8"),
    ("8-bit linear quantization: Weight-only (post training)", "int8", "ptq-dynamic"),
    ("8-bit linear quantization: Weight & activation (training time, W8A8 per-channel symmetric)", "int8",
     "qat-int8"),
    ("palettization (weight clustering) Differentiable K-Means", "2 bit", "cluster:4"),
    ("palettization (weight clustering) K-Means (post-training)", "6 bit", "cluster:64"),
    ("palettization (weight clustering) K-Means (post-training)", "1 bit", "cluster:2"),
    ("unstructured magnitude pruning (MagnitudePruner)", "sparsity 75%", "prune:0.75"),
])
def test_techniques_map_onto_the_grammar(technique: str, setting: str, spec: str) -> None:
    assert map_technique(technique, setting)[0] == spec


@pytest.mark.parametrize(("technique", "setting", "reason"), [
    ("cluster:16 (last 3 Conv2D)", "", "technique applies to a subset of layers"),
    ("post-training full-integer quantization (16x8)", "int8 weights, int16 activations",
     "technique has no spec in the grammar"),
    ("post-training full-integer quantization", "int8 weights, int16 activations",
     "technique has no spec in the grammar"),
    ("unstructured magnitude pruning (MagnitudePruner)", "sparsity 100%", "technique has no spec in the grammar"),
    ("knowledge distillation", "", "technique has no spec in the grammar"),
])
def test_unmappable_techniques_are_refused_not_guessed(technique: str, setting: str, reason: str) -> None:
    with pytest.raises(Skip) as info:
        map_technique(technique, setting)
    assert info.value.reason == reason


def test_networks_map_to_zoo_profiles_only_when_the_same_network_and_size() -> None:
    v1 = identify("mobilenet_v1_1.0_224")
    assert (v1.model, v1.family, v1.input_size, v1.width) == ("mobilenet", "mobilenet_v1", 224, 1.0)
    assert v1.profile is not None and v1.macs == v1.profile.macs
    assert identify("Mobilenet_V1_1.0_128").model == "mobilenet@128"
    assert identify("mobilenet_v2_224").profile is not None
    assert identify("inception_v3").input_size == 299

    # TF-slim ResNet v2 runs at 299: our 224 profile is not that network; MACs scaled, params exact.
    r = identify("resnet_v2_101")
    assert (r.model, r.family, r.input_size, r.profile) == ("resnet101v2@299", "resnet_v2", 299, None)
    assert r.params == 44675560 and r.macs is not None and r.macs > 7_194_476_544
    assert any("estimated" in n for n in r.notes)

    # A width the zoo does not ship: no profile; MobileNet's per-layer channel scaling gives the
    # paper's figures (41 M MACs, 0.5 M parameters at 0.25-224) within a few percent.
    q = identify("Mobilenet_V1_0.25_224")
    assert q.profile is None and q.model == "mobilenet-w0.25" and q.width == 0.25
    assert q.macs is not None and q.params is not None
    assert abs(q.macs / 41e6 - 1) < 0.03 and abs(q.params / 0.47e6 - 1) < 0.05

    outside = identify("ds_cnn_l")
    assert (outside.family, outside.domain, outside.macs, outside.width) == ("ds_cnn", "audio", None, None)
    with pytest.raises(Skip):
        identify("alexnet")


# ---------------------------------------------------------------------------------------------
# A hand-written CSV pair.


def test_tiny_csvs_map_convert_and_report(tiny: list[Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    report = ingest(tiny, store)
    assert report.lines == len(TINY_TFMOT) + len(TINY_MORE)
    assert len(report.rows) + len(report.skipped) == report.lines
    assert report.skipped_by_reason() == {
        "metric is not top-1 accuracy": 3, "technique applies to a subset of layers": 1,
        "unit is not fraction or percent": 1, "network not in published.NETWORKS": 1, "value is not a number": 1,
        "technique has no spec in the grammar": 1}
    assert report.new == len(report.rows) == 6

    rows = report.rows
    frac = _by(rows, model="mobilenet_v2", technique="ptq-dynamic")
    assert frac["top1"] == pytest.approx(0.637) and frac["accuracy_delta_pp"] == pytest.approx(-8.2)
    pct = _by(rows, model="inception_v3", technique="prune:0.5")
    assert pct["top1"] == pytest.approx(0.780) and pct["accuracy_delta_pp"] == pytest.approx(-0.1)
    hosted = _by(rows, model="mobilenet-w0.25")
    assert hosted["technique"] == "qat-int8" and hosted["profile_digest"] is None
    assert hosted["accuracy_delta_pp"] == pytest.approx(-1.5) and "estimated" in str(hosted["notes"])
    spread = _by(rows, model="resnet50", technique="qat-int8")
    assert spread["accuracy_delta_pp"] == pytest.approx(0.66) and "±0.05" in str(spread["notes"])
    assert _by(rows, model="mobilenet_v2", technique="cluster:16")["dataset"] == "imagenet"
    assert _by(rows, model="mobilenet_v2", technique="prune:0.75")["accuracy_delta_pp"] == pytest.approx(-2.86)

    for row in rows:
        assert validate_row(row) == []  # no size or latency needed for a published row
        assert (row["source"], row["fingerprint_id"], row["device"], row["model_kind"]) == \
            ("published", "published", "published", "published")
        assert row["citation"] and row["tool_version"]
    stored = store.read()
    assert len(stored) == 6 and set(stored["source"]) == {"published"}
    assert len(store.read(source="measured")) == 0
    for digest in stored["profile_digest"].dropna():
        assert store.get_profile(str(digest)) is not None


def test_ingesting_twice_adds_nothing(tiny: list[Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = ingest(tiny, store)
    shards = store.shards()
    again = ingest(tiny, store)
    assert (again.new, again.already_present) == (0, first.new)
    assert store.shards() == shards and len(store) == first.new


def test_dry_run_writes_nothing(tiny: list[Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    report = ingest(tiny, store, dry_run=True)
    assert report.new == 6 and report.dry_run
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("header", "rows", "message"), [
    (["source", "model", "metric", "baseline_value", "compressed_value"], [["d", "m", "top1", "1", "2"]],
     "missing column(s) dataset, task, device, technique, unit"),
    (TFMOT_HEADER, [TINY_TFMOT[0][:-3]], "fields expected"),
    ([], [], "missing column(s) source"),
])
def test_a_malformed_csv_is_one_clear_error_and_nothing_is_written(
        tiny: list[Path], tmp_path: Path, header: list[str], rows: list[list[str]], message: str) -> None:
    bad = _write(tmp_path / "bad.csv", header, rows) if header else tmp_path / "bad.csv"
    if not header:
        bad.write_text("")
    store = Store(tmp_path / "store")
    with pytest.raises(DatasetError, match=r"bad\.csv") as info:
        ingest([*tiny, bad], store)
    assert message in str(info.value)
    assert len(store) == 0


def test_a_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        ingest([tmp_path / "nope.csv"], Store(tmp_path / "store"))


# ---------------------------------------------------------------------------------------------
# The real CSVs.


def test_real_csvs_every_top1_figure_is_mapped_or_skipped_with_a_reason(
        published_csvs: list[Path], tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    report = ingest(published_csvs, store)
    lines = sum(len(published.read_csv(p)) for p in published_csvs)
    assert report.lines == lines == len(report.rows) + len(report.skipped)
    assert report.rows and report.new == len(report.rows)
    for s in report.skipped:  # a top-1 figure is skipped only for a reason other than its metric
        is_top1 = published._TOP1.fullmatch(s.metric.lower()) is not None
        assert (s.reason == "metric is not top-1 accuracy") is not is_top1, s

    rows = report.rows
    for row in rows:
        assert validate_row(row) == []
        assert Pipeline.parse(str(row["technique"])).spec == row["technique"]
        assert 0 <= float(row["top1"]) <= 1 and math.isfinite(float(row["accuracy_delta_pp"]))  # type: ignore[arg-type]
    # Spot checks against the documents.
    ptq = _by(rows, model="mobilenet", technique="ptq-dynamic",
              citation="tflite-model-optimization-table1")
    assert ptq["accuracy_delta_pp"] == pytest.approx(-5.2) and ptq["top1"] == pytest.approx(0.657)
    assert ptq["profile_digest"]
    slim_v2 = _by(rows, model="resnet101v2@299", technique="ptq-dynamic")
    assert slim_v2["profile_digest"] is None and slim_v2["input_size"] == 299
    assert {r["technique"] for r in rows} >= {"ptq-dynamic", "qat-int8", "ptq-int8", "prune:0.5", "prune-2:4",
                                              "cluster:32"}

    # The predictor's accuracy component takes every one of them, flagged as published.
    from advisor.cli_predictor import read_training_data

    frame, profiles = read_training_data(tmp_path / "store")
    assert set(profiles) == {r["profile_digest"] for r in rows if r["profile_digest"]}
    data = prepare(frame, profiles)
    X, y = _select_accuracy(data, {})
    assert len(y) == len(rows)
    assert np.all(X[:, F.INDEX["source_published"]] == 1.0)

    again = ingest(published_csvs, store)
    assert again.new == 0 and again.already_present == len(rows)


# ---------------------------------------------------------------------------------------------
# The command line.


def _app() -> App:
    app = App()
    register(app)
    return app


def test_cli_ingests_and_reports_json(tiny: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import advisor.cli

    monkeypatch.setattr(advisor.cli, "app", _app())
    store = tmp_path / "store"
    args = ["ingest-published", *map(str, tiny), "--store", str(store), "--json"]
    code = advisor.cli.main([*args, "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["new"] == 6 and not store.exists()
    assert advisor.cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["mapped"], out["new"], out["skipped"]) == (6, 6, 8)
    assert out["skipped_by_reason"]["metric is not top-1 accuracy"] == 3
    code = advisor.cli.main(args[:-1])
    text = capsys.readouterr().out
    assert code == 0 and "added 0 row(s)" in text and "(6 already there)" in text


def test_cli_user_errors_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    import advisor.cli

    monkeypatch.setattr(advisor.cli, "app", _app())
    code = advisor.cli.main(["ingest-published", str(tmp_path / "missing.csv"), "--store", str(tmp_path / "s")])
    assert code == 2
    assert "missing.csv does not exist" in capsys.readouterr().err

    monkeypatch.setattr(published, "DEFAULT_DIR", tmp_path / "no-shared")
    code = advisor.cli.main(["ingest-published", "--store", str(tmp_path / "s")])
    assert code == 2
    assert "pass the CSV paths" in capsys.readouterr().err
