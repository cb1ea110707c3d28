"""`Advisor.load().recommend(...)` and `advisor recommend`, on a small real bundle.

The bundle is trained here from the synthetic rows of test_predictor (a made-up kernel-cost
formula: numbers that exercise the mechanics and are never reported as measurements). The zoo
profiles it answers about are the real ones shipped in advisor/data/profiles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_predictor import FAST, synthetic_rows

from advisor import api
from advisor import bundle as B
from advisor.api import Advisor, Recommendation, profile_for
from advisor.cli import main
from advisor.errors import ModelFileError, OptionError
from advisor.predictor import Predictor
from advisor.profile import PROFILER_REVISION
from advisor.techniques import Pipeline

REPO = Path(__file__).resolve().parent.parent
SHIPPED_BUNDLE = REPO / "models" / "current"
CONTRACT_KEYS = {"model", "device", "constraints", "decision", "technique", "predicted", "baseline", "alternatives",
                 "pareto", "explanation", "predictor", "rejected", "nearest", "search"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Prepended to `python -c` programs: any import of these fails, as on a machine without them.
BLOCK_HEAVY = """
import sys
BLOCKED = ("tensorflow", "tf_keras", "keras", "xgboost", "pandas")
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"import of {name} blocked by the test")
        return None
sys.meta_path.insert(0, _Blocker())
"""


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """A real bundle (XGBoost JSON + card) from synthetic rows on two simulated machines; ~2 s."""
    rows, profiles = synthetic_rows(devices=("sim-x86", "sim-arm"))
    predictor = Predictor(**FAST).fit(rows, profiles)
    return B.save(predictor, tmp_path_factory.mktemp("models") / "current",
                  {"evaluation": {"note": "synthetic rows: mechanics only"}})


@pytest.fixture(scope="module")
def advisor(bundle_dir) -> Advisor:
    return Advisor.load(bundle_dir)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's profile cache."""
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def strict_json(text: str) -> dict:
    """Parse, refusing NaN and Infinity (not JSON, and what a careless float would print)."""
    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def _assert_bands(bands: dict) -> None:
    assert set(bands) == {"latency_ms", "energy_mj", "size_mb", "accuracy_delta_pp"}
    assert bands["latency_ms"] is not None
    for target, b in bands.items():
        if b is not None:
            assert set(b) == {"p10", "p50", "p90"}
            assert all(np.isfinite(list(b.values()))), target
            assert b["p10"] <= b["p50"] <= b["p90"], (target, b)


# ---------------------------------------------------------------------------------------------
# The Python API and the JSON contract


def _budgets(advisor: Advisor) -> dict[str, dict]:
    """Constraints that lead to each decision, from the bundle's own predictions."""
    base = advisor.recommend("mobilenet_v2", budget_ms=1e6).baseline["latency_ms"]
    return {"keep": {"budget_ms": 1e6},  # met by the model as it is; compressing only costs accuracy
            "compress": {"budget_ms": 0.9 * base["p10"]},  # the uncompressed model misses it even at p10
            "infeasible": {"budget_ms": 1e-4}}


@pytest.mark.parametrize("expected", ["keep", "compress", "infeasible"])
def test_recommend_returns_the_documented_contract(advisor, expected):
    rec = advisor.recommend(model="mobilenet_v2", **_budgets(advisor)[expected])
    assert isinstance(rec, Recommendation)
    out = rec.to_dict()
    assert set(out) == CONTRACT_KEYS
    assert out["decision"] == expected
    assert (out["technique"] is None) == (expected == "keep")
    _assert_bands(out["predicted"])
    _assert_bands(out["baseline"])
    assert out["model"] == "mobilenet_v2" and out["device"] == "local"
    assert out["constraints"]["budget_ms"] == _budgets(advisor)[expected]["budget_ms"]
    assert out["predictor"]["candidates"] > 100 and out["predictor"]["rows_total"] == 160
    assert out["explanation"] and all(isinstance(line, str) for line in out["explanation"])
    assert sum(p["chosen"] for p in out["pareto"]) <= 1
    assert all(a["technique"] != out["technique"] for a in out["alternatives"])
    strict_json(json.dumps(out))
    if expected == "keep":
        assert out["predicted"] == out["baseline"] and out["nearest"] is None
    elif expected == "compress":
        assert out["predicted"]["latency_ms"]["p90"] <= out["constraints"]["budget_ms"]
        assert out["baseline"]["latency_ms"]["p10"] > out["constraints"]["budget_ms"]
        assert out["nearest"] is None
    else:
        assert out["nearest"]["technique"] == out["technique"]
        assert out["nearest"]["misses"]["latency_ms"] > 0
        assert out["explanation"][0].startswith("nothing meets the constraints")
        miss = out["nearest"]["misses"]["latency_ms"]
        assert out["explanation"][0].endswith(
            f"{out['technique']}, which misses the latency budget by {miss:.3g} ms at the 90% bound")


def test_plans_without_accuracy_evidence_say_unknown_and_are_never_chosen_for_accuracy(advisor):
    """The synthetic rows never measured a student's or a factorised network's accuracy: those plans
    carry null accuracy in the JSON (strict JSON, no NaN), and accuracy as the objective never picks them."""
    def structural(spec: str | None) -> bool:
        return spec is not None and Pipeline.parse(spec).is_structural

    fast = advisor.recommend("mobilenet_v2", budget_ms=1e6, objective="latency", top=200).to_dict()
    strict_json(json.dumps(fast))
    plans = [fast["predicted"] | {"technique": fast["technique"]}] + [
        a["predicted"] | {"technique": a["technique"]} for a in fast["alternatives"]]
    unknown = [p for p in plans if structural(p["technique"])]
    assert unknown and all(p["accuracy_delta_pp"] is None for p in unknown)
    measured = {"ptq-int8", "ptq-dynamic", "prune", "cluster"}  # the steps the synthetic accuracy rows have
    known = [p for p in plans
             if p["technique"] and {st.name for st in Pipeline.parse(p["technique"]).steps} <= measured]
    assert known and all(p["accuracy_delta_pp"] is not None for p in known)
    if structural(fast["technique"]):
        assert any("is unknown" in line for line in fast["explanation"])
    accurate = advisor.recommend("mobilenet_v2", budget_ms=1e6, objective="accuracy").to_dict()
    assert not structural(accurate["technique"])
    assert all(p["accuracy_delta_pp"] is not None for p in accurate["pareto"])


def test_a_post_training_quantizer_wins_back_no_accuracy(advisor):
    """Through the real scoring path: each plan that ends in post-training quantization after a
    step that fine-tunes is predicted to lose at least what its parts lose."""
    from advisor.composition import post_training_split

    specs = ["prune:0.8+ptq-int8", "cluster:16+ptq-dynamic", "prune:0.5+cluster:16+ptq-int8", "prune:0.8",
             "cluster:16", "prune:0.5+cluster:16", "ptq-int8", "ptq-dynamic"]
    profile, fp, _ = advisor._network_on_device("mobilenet_v2", "local", 1, None)
    acc = advisor.score(profile, specs, fp)["accuracy_delta_pp"][:, 1]
    median = dict(zip(specs, acc))
    composed = [s for s in specs if post_training_split(s)]
    assert len(composed) == 3
    for spec in composed:
        prefix, suffix = post_training_split(spec)
        assert median[spec] <= median[prefix] + median[suffix] + 1e-9, spec


def test_the_device_is_the_training_machine_named_or_local(advisor):
    # sim-arm had a power meter: an energy budget can be checked there, not on this machine
    rec = advisor.recommend("mobilenet_v2@96", device="sim-arm", budget_mj=1e6)
    assert rec.predicted["energy_mj"] is not None and rec.device == "sim-arm"
    assert rec.predictor["rows_device"] == 80
    with pytest.raises(OptionError, match="no energy mj model"):
        advisor.recommend("mobilenet_v2", budget_mj=1e6)
    local = advisor.recommend("mobilenet_v2@96", budget_ms=1e6)
    assert any("no measurements in the training data" in line for line in local.explanation)


def test_a_model_file_needs_a_keras_model_not_a_tflite(tmp_path):
    tfl = tmp_path / "model.tflite"
    tfl.write_bytes(b"TFL3" + bytes(60))
    with pytest.raises(ModelFileError, match="no layer profile"):
        profile_for(str(tfl))
    with pytest.raises(OptionError, match="--input-size applies to zoo names"):
        profile_for(str(tfl), input_size=96)


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_json_is_the_same_object_as_the_api(capsys, advisor, bundle_dir):
    code, out, err = run(capsys, "recommend", "--model", "mobilenet_v2", "--budget-ms", "50", "--bundle", bundle_dir,
                         "--json")
    assert code == 0, err
    printed = strict_json(out)
    expected = advisor.recommend(model="mobilenet_v2", budget_ms=50).to_dict()
    assert printed == json.loads(json.dumps(expected))


def test_cli_human_output_leads_with_the_decision(capsys, bundle_dir):
    code, out, _ = run(capsys, "recommend", "--model", "mobilenet_v2", "--budget-ms", "1e-4", "--bundle", bundle_dir)
    assert code == 0
    assert out.startswith("INFEASIBLE") and "nearest:" in out and "Pareto front" in out


def test_cli_plot_writes_a_png(capsys, tmp_path, bundle_dir):
    png = tmp_path / "front.png"
    code, _, err = run(capsys, "recommend", "--model", "mobilenet_v2", "--budget-ms", "50", "--bundle", bundle_dir,
                       "--plot", png, "--json")
    assert code == 0, err
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000


@pytest.mark.parametrize("args, fragment", [
    (["--model", "resnet5"], "unknown model 'resnet5'; did you mean resnet50"),
    (["--model", "mobilenet_v2", "--budget-ms", "-5"], "--budget-ms must be a positive number, got -5"),
    (["--model", "mobilenet_v2", "--max-accuracy-drop", "150"], "--max-accuracy-drop must be between 0 and 100"),
    (["--model", "mobilenet_v2", "--device", "jetson-xyz"], "unknown device 'jetson-xyz'"),
    (["--model", "mobilenet_v2", "--budget-mj", "5"], "no energy mj model"),
    (["--model", "mobilenet_v2", "--objective", "speed"], "unknown objective 'speed'"),
    (["--model", "mobilenet_v2", "--confidence", "1.5"], "--confidence must be in [0.5, 1)"),
    (["--model", "mobilenet_v2@97"], "no profile of mobilenet_v2 at input size 97"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, bundle_dir, args, fragment):
    code, out, err = run(capsys, "recommend", *args, "--bundle", bundle_dir)
    assert code == 2, (out, err)
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_bundle_folder_is_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "recommend", "--model", "mobilenet_v2", "--bundle", tmp_path / "nowhere")
    assert code == 2 and "no predictor bundle at" in err and len(err.strip().splitlines()) == 1


def test_a_bundle_from_another_feature_schema_is_exit_2(capsys, tmp_path, bundle_dir):
    altered = tmp_path / "altered"
    shutil.copytree(bundle_dir, altered)
    card = json.loads((altered / "card.json").read_text())
    card["feature_schema"]["hash"] = "0" * len(card["feature_schema"]["hash"])
    (altered / "card.json").write_text(json.dumps(card))
    code, _, err = run(capsys, "recommend", "--model", "mobilenet_v2", "--budget-ms", "50", "--bundle", altered)
    assert code == 2 and "was trained on feature schema 000" in err and "retrain" in err
    assert len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# The answer path needs none of TensorFlow, Keras, xgboost, pandas


def _blocked_python(program: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", BLOCK_HEAVY + program], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)


def test_recommend_runs_with_tensorflow_keras_xgboost_and_pandas_unimportable(bundle_dir, tmp_path):
    bundle = SHIPPED_BUNDLE if SHIPPED_BUNDLE.is_dir() else bundle_dir
    argv = ["recommend", "--model", "resnet50", "--budget-ms", "50", "--bundle", str(bundle), "--json"]
    program = f"""
import contextlib, io, json
from advisor.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main({argv!r})
out = json.loads(buf.getvalue())
print(json.dumps({{"code": code, "decision": out["decision"], "technique": out["technique"],
                  "loaded": sorted(m for m in BLOCKED if m in sys.modules)}}))
"""
    proc = _blocked_python(program, {"ADVISOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert result["decision"] in {"keep", "compress", "infeasible"}
    assert result["loaded"] == []


def test_the_blocker_really_blocks():
    proc = _blocked_python("import pandas")
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


# ---------------------------------------------------------------------------------------------
# A user's model file: profiled once with TensorFlow, then answered from the cache


@pytest.fixture(scope="module")
def tiny_keras_file(tmp_path_factory, keras) -> Path:
    """A real 3-layer Keras model for 16x16 RGB images, saved as .keras."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    path = tmp_path_factory.mktemp("user") / "tiny.keras"
    model.save(path)
    return path


@pytest.mark.tf
def test_predict_takes_a_model_file_like_recommend(capsys, bundle_dir, tiny_keras_file):
    code, out, err = run(capsys, "predict", "--model", tiny_keras_file, "--technique", "ptq-int8",
                         "--bundle", bundle_dir, "--json")
    assert code == 0, err
    result = strict_json(out)
    assert result["model"].startswith("file:tiny.keras@") and result["technique"] == "ptq-int8"
    assert result["prediction"]["latency"]["p50"] > 0


def test_a_profile_path_that_is_not_text_is_exit_2(capsys, tmp_path, bundle_dir):
    binary = tmp_path / "profile.json"
    binary.write_bytes(b"\x89\xe3\x00\xff" * 8)
    code, _, err = run(capsys, "predict", "--model", binary, "--technique", "ptq-int8", "--bundle", bundle_dir)
    assert code == 2 and "profile.json" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.tf
def test_a_model_file_is_profiled_once_and_cached_by_file_hash(tmp_path, bundle_dir, tiny_keras_file):
    first = profile_for(str(tiny_keras_file))
    cached = tmp_path / "cache" / "profiles" / f"{api._file_digest(tiny_keras_file)}-r{PROFILER_REVISION}.json"
    assert cached.is_file()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]
    assert first.macs == 14 * 14 * 4 * 3 * 3 * 3 + 4 * 3 and first.params == 3 * 3 * 3 * 4 + 4 + 4 * 3 + 3
    assert profile_for(str(tiny_keras_file)) == first
    # The second time needs no TensorFlow: a fresh process where it cannot be imported answers.
    program = f"""
import json
from advisor.api import Advisor, profile_for
prof = profile_for({str(tiny_keras_file)!r})
rec = Advisor.load({str(bundle_dir)!r}).recommend({str(tiny_keras_file)!r}, budget_ms=1000)
print(json.dumps({{"profile": prof.to_json(), "decision": rec.decision,
                  "loaded": sorted(m for m in BLOCKED if m in sys.modules)}}))
"""
    proc = _blocked_python(program, {"ADVISOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["profile"] == first.to_json()
    assert result["decision"] in {"keep", "compress", "infeasible"} and result["loaded"] == []


@pytest.mark.tf
def test_verify_measures_the_choice_stores_the_rows_and_shows_both(capsys, tmp_path, bundle_dir, tiny_keras_file):
    from advisor.store import Store

    store = tmp_path / "store"
    # --objective size makes a compressed plan the choice, so that both rows are measured
    code, out, err = run(capsys, "recommend", "--model", tiny_keras_file, "--verify", "--store", store,
                         "--budget-ms", "1000", "--objective", "size", "--bundle", bundle_dir, "--json")
    assert code == 0, err
    res = strict_json(out)
    assert set(res) == CONTRACT_KEYS | {"verification"}
    v = res["verification"]
    technique = res["technique"] or "none"
    assert v["technique"] == technique
    assert set(v["predicted"]) == set(v["measured"]) == {"latency_ms", "energy_mj", "size_mb", "accuracy_delta_pp"}
    assert v["predicted"]["latency_ms"] == res["predicted"]["latency_ms"]["p50"]
    assert v["measured"]["latency_ms"] > 0 and v["measured"]["size_mb"] > 0
    assert v["constraints_hold"] == {"latency_ms": v["measured"]["latency_ms"] <= 1000}
    assert any(line.startswith("latency_ms") for line in v["lines"])
    assert not any("random weights" in line for line in v["lines"])  # a user's file has its own weights
    rows = Store(store).read()
    # a structural plan is timed against the network it builds: that float network is stored too
    structure = Pipeline.parse(technique).structure.spec
    assert set(rows["technique"]) == {"none", technique, structure}
    assert (rows["status"] == "ok").all()
    assert Path(v["saved_to"]).exists()
    assert rows.set_index("technique").loc[technique, "latency_ms_median"] == pytest.approx(v["measured"]["latency_ms"])


@pytest.mark.tf
def test_verify_command_measures_the_plan_asked_for(capsys, tmp_path, bundle_dir, tiny_keras_file):
    """`advisor verify --technique SPEC` checks that plan, not the advisor's choice: both it and the
    original are measured and stored, and the predicted p50s are the ones `predict` gives."""
    from advisor.store import Store

    store = tmp_path / "store"
    code, out, err = run(capsys, "verify", "--model", tiny_keras_file, "--technique", "ptq-dynamic", "--budget-ms",
                         "1000", "--store", store, "--bundle", bundle_dir, "--json")
    assert code == 0, err
    res = strict_json(out)
    assert res["technique"] == "ptq-dynamic" and res["decision"] == "compress"
    v = res["verification"]
    assert v["technique"] == "ptq-dynamic" and v["constraints_hold"] == {"latency_ms": True}
    assert v["predicted"]["latency_ms"] == res["predicted"]["latency_ms"]["p50"]
    assert set(Store(store).read()["technique"]) == {"none", "ptq-dynamic"}
    code, _, err = run(capsys, "verify", "--model", tiny_keras_file, "--technique", "prune:1.5", "--store", store,
                       "--bundle", bundle_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "prune" in err


def test_python_api_loads_no_command_line_or_training_libraries(bundle_dir):
    """Deployment tooling calls the API in its own process: no command line, pandas, xgboost, TensorFlow."""
    code = ("import sys; from advisor import Advisor; "
            f"r = Advisor.load({str(bundle_dir)!r}).recommend('mobilenet_v2', budget_ms=50); "
            "print(r.decision, sorted(m for m in ('advisor.cli_kit', 'pandas', 'xgboost', 'tensorflow') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("[]")


@pytest.mark.tf
def test_verify_says_when_it_measured_random_weights(capsys, tmp_path, bundle_dir):
    code, out, err = run(capsys, "verify", "--model", "transformer_text@32", "--technique", "ptq-dynamic",
                         "--store", tmp_path / "store", "--bundle", bundle_dir, "--json")
    assert code == 0, err
    lines = strict_json(out)["verification"]["lines"]
    assert any(line.startswith("measured with random weights") for line in lines)

