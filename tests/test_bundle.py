"""Bundles on disk, loaded with numpy only, and the predictor's command-line commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_predictor import FAST, synthetic_rows

from advisor import bundle as B
from advisor import cli_predictor
from advisor import features as F
from advisor.cli_kit import App
from advisor.errors import AdvisorError, BundleError, ModelFileError, OptionError, UnknownNameError
from advisor.predictor import Predictor, prepare
from advisor.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rows, profiles = synthetic_rows(devices=("sim-x86", "sim-arm"))
    predictor = Predictor(**FAST).fit(rows, profiles)
    directory = tmp_path_factory.mktemp("models") / "current"
    B.save(predictor, directory, {"evaluation": {"split": "family", "note": "synthetic"}})
    return predictor, directory, rows, profiles


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_save_writes_json_only_and_a_complete_card(trained):
    predictor, directory, rows, _ = trained
    files = sorted(p.name for p in directory.iterdir())
    assert all(name.endswith(".json") for name in files)
    assert set(files) == {"card.json", *(f"{c}.json" for c in predictor.boosters_)}
    card = json.loads((directory / "card.json").read_text())
    assert card["format_version"] == B.BUNDLE_FORMAT and card["version"] and card["created"].endswith("Z")
    assert card["feature_schema"]["hash"] == F.schema_hash()
    assert card["feature_schema"]["names"] == list(F.FEATURE_NAMES)
    assert card["targets"]["latency"]["unit"] == "ms" and card["targets"]["latency"]["available"]
    assert card["training_data"]["by_device"] == {"sim-arm": len(rows) // 2, "sim-x86": len(rows) // 2}
    assert card["training_data"]["by_source"] == {"measured": len(rows)}
    assert len(card["training_data"]["hash"]) == 16
    assert card["evaluation"] == {"split": "family", "note": "synthetic"}
    assert card["library_versions"]["xgboost"] == "3.2.0"
    assert card["components"]["latency_base"]["rows"] == predictor.n_rows_["latency_base"]


def test_loaded_bundle_predicts_exactly_like_the_fitted_predictor(trained):
    predictor, directory, rows, profiles = trained
    loaded = B.load(directory)
    X = prepare(rows, profiles).X
    a, b = predictor.predict(X), loaded.predict(X)
    assert set(a) == set(b) == set(loaded.targets)
    for target in a:
        np.testing.assert_array_equal(a[target], b[target])
    assert loaded.predictor.devices_ == predictor.devices_


def test_loading_imports_no_xgboost_pandas_or_tensorflow(trained):
    _, directory, _, _ = trained
    code = ("import sys, numpy as np; from advisor.bundle import load; from advisor import features as F; "
            f"b = load({str(directory)!r}); "
            "X = F.feature_matrix(F.profile_vector.__module__ and np.zeros(len(F.PROFILE_NAMES)), ['none'], "
            "np.zeros(len(F.DEVICE_NAMES))); b.predict(X); "
            "print(sorted(m for m in ('xgboost', 'pandas', 'tensorflow', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_save_replaces_an_existing_bundle(trained, tmp_path):
    predictor, directory, _, _ = trained
    target = _copy(directory, tmp_path / "b")
    (target / "stale.json").write_text("{}")
    B.save(predictor, target, version="v2")
    assert not (target / "stale.json").exists()
    assert B.load(target).version == "v2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(BundleError, match="unfitted"):
        B.save(Predictor(), tmp_path / "x")


@pytest.mark.parametrize("damage, message", [
    (lambda d: None, "no predictor bundle at"),
    (lambda d: (d / "card.json").unlink(), "has no card.json"),
    (lambda d: (d / "card.json").write_text("{oops"), "card.json is unreadable or corrupt"),
    (lambda d: (d / "size.json").unlink(), "cannot read size.json"),
    (lambda d: (d / "size.json").write_bytes((d / "size.json").read_bytes()[:-40]), "does not match the card's hash"),
], ids=["missing-folder", "missing-card", "corrupt-card", "missing-model", "corrupt-model"])
def test_damaged_bundles_are_refused_in_one_line(trained, tmp_path, damage, message):
    _, directory, _, _ = trained
    if message.startswith("no predictor"):
        target = tmp_path / "absent"
    else:
        target = _copy(directory, tmp_path / "b")
        damage(target)
    with pytest.raises(BundleError, match=message) as info:
        B.load(target)
    assert "\n" not in str(info.value)


def test_a_different_feature_schema_is_refused(trained, tmp_path):
    _, directory, _, _ = trained
    target = _copy(directory, tmp_path / "b")
    card = json.loads((target / "card.json").read_text())
    card["feature_schema"]["hash"] = "0000000000000000"
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="feature schema 0000000000000000.*retrain"):
        B.load(target)
    card["feature_schema"]["hash"] = F.schema_hash()
    card["format_version"] = B.BUNDLE_FORMAT + 1
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="upgrade"):
        B.load(target)


# ---------------------------------------------------------------------------------------------
# The command line: train, evaluate, predict.


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rows, profiles = synthetic_rows()
    root = tmp_path_factory.mktemp("store")
    st = Store(root)
    records = [{k: v for k, v in r.items() if v is not None and v == v} for r in rows.to_dict("records")]
    st.append(records)
    for p in profiles.values():
        st.put_profile(p)
    return root, profiles


@pytest.fixture
def cli(run_cli):
    """Run the predictor's commands (alone in an app) through `advisor.cli.main`: (exit code, stdout, stderr)."""
    application = App()
    cli_predictor.register(application)
    return lambda *args: run_cli(application, *args)


@pytest.fixture
def fast(monkeypatch):
    """Train with few trees so the command-line tests take seconds."""
    import advisor.evaluate
    import advisor.predictor

    class Fast(Predictor):
        def __init__(self, **params):
            super().__init__(**{**FAST, **params})

    monkeypatch.setattr(advisor.predictor, "Predictor", Fast)
    monkeypatch.setattr(advisor.evaluate, "Predictor", Fast)


def test_train_then_predict_on_the_command_line(cli, store, tmp_path, fast):
    root, profiles = store
    out = tmp_path / "models" / "current"
    code, stdout, stderr = cli("train", "--data", root, "--out", out, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)  # JSON alone on stdout; the training's stages went to stderr
    assert "featurising" in stderr and "evaluating, family split: fold 1" in stderr
    assert summary["bundle"] == str(out) and summary["evaluation"]["split"] == "family"
    assert json.loads((out / "card.json").read_text())["evaluation"]["targets"]["latency"]["n"] > 0

    profile_file = tmp_path / "net.json"
    profile_file.write_text(next(iter(profiles.values())).to_json())
    code, stdout, stderr = cli("predict", "--model", profile_file, "--technique", "prune:0.5+ptq-int8",
                               "--device", "sim-x86", "--bundle", out, "--json")
    assert code == 0, stderr
    answer = json.loads(stdout)
    assert answer["technique"] == "prune:0.5+ptq-int8"
    lat, base = answer["prediction"]["latency"], answer["baseline"]["latency"]
    assert lat["unit"] == "ms" and lat["p10"] <= lat["p50"] <= lat["p90"]
    assert base["p50"] > lat["p50"]
    assert answer["baseline"]["accuracy_delta"]["p50"] == 0.0
    assert "energy" not in answer["prediction"] and "energy" in answer["unavailable"]  # no row had energy

    code, text, _ = cli("predict", "--model", profile_file, "--technique", "ptq-int8", "--device", "sim-x86",
                        "--bundle", out)
    assert code == 0 and "p50" in text and "latency" in text

    code, text, _ = cli("train", "--data", root, "--out", tmp_path / "b2", "--evaluate", "none")
    assert code == 0 and "saved" in text


def test_evaluate_on_the_command_line(cli, store, fast):
    root, _ = store
    code, stdout, stderr = cli("evaluate", "--split", "device", "--data", root, "--json")
    assert code == 0, stderr
    out = json.loads(stdout)
    assert out["split"] == "device" and "one (sim-x86)" in out["notes"][0]
    code, text, _ = cli("evaluate", "--split", "random", "--data", root)
    assert code == 0 and "latency" in text


def test_evaluate_writes_the_held_out_predictions(cli, store, fast, tmp_path):
    import csv

    root, _ = store
    out = tmp_path / "held_out.csv"
    code, stdout, stderr = cli("evaluate", "--split", "random", "--data", root, "--json", "--predictions", out)
    assert code == 0, stderr
    scores = json.loads(stdout)["targets"]
    with out.open() as f:
        entries = list(csv.DictReader(f))
    for target in ("latency", "size"):  # one line per scored row, and the scores follow from them
        mine = [e for e in entries if e["target"] == target]
        assert len(mine) == scores[target]["n"] > 0
        hits = [abs(float(e["p50"]) / float(e["truth"]) - 1) <= 0.10 for e in mine]
        assert sum(hits) / len(hits) == pytest.approx(scores[target]["within_10pct"])
        assert all(float(e["p10"]) <= float(e["p50"]) <= float(e["p90"]) for e in mine)
    code, _, stderr = cli("evaluate", "--data", root, "--predictions", tmp_path / "no" / "x.csv")
    assert code == 2 and stderr.startswith("error: --predictions: folder") and "does not exist" in stderr  # OptionError


def test_command_errors_are_advisor_errors(trained, tmp_path):
    _, directory, _, _ = trained
    with pytest.raises(UnknownNameError, match="unknown device 'jetson'.*valid: local, sim-arm, sim-x86"):
        cli_predictor.device_fingerprint("jetson", B.load(directory).predictor)
    with pytest.raises(OptionError, match="no measurement rows"):
        cli_predictor.read_training_data(tmp_path / "empty")
    from test_features import tiny

    (tmp_path / "tiny.json").write_text(tiny().to_json())
    with pytest.raises(BundleError, match="no predictor bundle"):
        cli_predictor.predict(model=str(tmp_path / "tiny.json"), technique="ptq-int8", bundle=tmp_path / "none")
    with pytest.raises(AdvisorError, match="unknown technique"):
        cli_predictor.predict(model=str(tmp_path / "tiny.json"), technique="zip", bundle=directory)
    with pytest.raises(ModelFileError):
        cli_predictor.resolve_profile(str(tmp_path / "missing.json"))


def test_zoo_names_resolve_through_the_packaged_index(tmp_path):
    from test_features import tiny

    p = tiny()
    (tmp_path / "tiny@32.json").write_text(p.to_json())
    (tmp_path / "tiny@64.json").write_text(p.to_json())
    index = {"tiny@32": {"file": "tiny@32.json", "model": "tiny", "input_size": 32, "default": True},
             "tiny@64": {"file": "tiny@64.json", "model": "tiny@64", "input_size": 64, "default": False}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert cli_predictor.resolve_profile("tiny", directory=tmp_path).model == "tiny"
    assert cli_predictor.resolve_profile("tiny", 64, directory=tmp_path).model == "tiny"
    assert cli_predictor.resolve_profile("tiny@64", directory=tmp_path).model == "tiny"
    with pytest.raises(OptionError, match="available: 32, 64"):
        cli_predictor.resolve_profile("tiny", 128, directory=tmp_path)
    with pytest.raises(UnknownNameError, match="unknown model 'tinny'; did you mean tiny"):
        cli_predictor.resolve_profile("tinny", directory=tmp_path)
