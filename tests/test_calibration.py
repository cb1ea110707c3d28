"""Calibration of a new device: the fit, the file, the answer path, and a real end-to-end run.

The fitting tests use a real bundle trained on synthetic rows (test_predictor's made-up formula:
mechanics only, never reported) and real zoo profiles; the "device" latencies there are the
bundle's own predictions times a known correction, so the test knows what a fit must recover.
The end-to-end test measures real tiny models on this machine through `advisor calibrate`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_api import BLOCK_HEAVY
from test_predictor import FAST, synthetic_rows

from advisor import bundle as B
from advisor import calibration as C
from advisor import features as F
from advisor.api import Advisor
from advisor.candidates import candidate_specs
from advisor.cli import main
from advisor.errors import BundleError, OptionError
from advisor.fingerprint import collect_fingerprint, fingerprint_id
from advisor.lookup import resolve_profile
from advisor.predictor import Predictor

REPO = Path(__file__).resolve().parent.parent
NETWORKS = ("resnet50@96", "mobilenet_v2@96", "lstm_text@64", "transformer_text@64", "efficientnet_b0@96",
            "densenet121@96", "vgg16@96", "gru_text@64")
SPECS = ("none", "ptq-dynamic", "ptq-float16", "ptq-int8")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    rows, profiles = synthetic_rows(devices=("sim-x86",))
    predictor = Predictor(**FAST).fit(rows, profiles)
    return B.save(predictor, tmp_path_factory.mktemp("models") / "current", {"evaluation": {"note": "synthetic"}})


@pytest.fixture(scope="module")
def loaded(bundle_dir):
    return B.load(bundle_dir)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_CALIBRATIONS", str(tmp_path / "calibrations"))
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path / "cache"))


def _features(fp, networks=NETWORKS, specs=SPECS, threads=1):
    feats = F.device_features(fp, threads)
    return np.vstack([F.feature_matrix(resolve_profile(n), list(specs), feats) for n in networks])


def _true_correction(X, loaded):
    """The made-up device: 1.6x slower LSTMs/GRUs, int8 a further 1.5x slower, dense work 0.8x."""
    W = C.group_shares(X, loaded.predictor.priors_["latency"])
    M = C.mode_flags(X)
    g = {name: W[:, i] for i, name in enumerate(F.GROUPS)}
    return np.log(1.6) * g["recurrent"] + np.log(1.5) * M[:, 2] + np.log(0.8) * g["dense"] + 0.05


def _fit(loaded, fp, **kw):
    X = _features(fp)
    pred = loaded.predict(X)
    measured = pred["latency"][:, 1] * np.exp(_true_correction(X, loaded))
    return C.fit_calibration(X, measured, pred, loaded.predictor.priors_["latency"], device="sim-new",
                             fingerprint=fp, threads=1, bundle_version=loaded.version,
                             reference=[f"id{i}" for i in range(len(X))], **kw), X, measured


def test_fit_recovers_a_known_device_correction(loaded):
    fp = collect_fingerprint()
    cal, X, measured = _fit(loaded, fp)
    assert cal.metrics["before"]["within_10pct"] < 0.6
    assert cal.metrics["after"]["within_10pct"] >= 0.8  # leave-one-network-out, not in-sample
    # On networks the fit never saw, the correction carries over.
    X_new = _features(fp, networks=("mobilenet_v3_small@96", "resnet101@96", "lstm_text@128"))
    pred = loaded.predict(X_new)
    fixed = cal.apply(X_new, pred, loaded.predictor.priors_["latency"])["latency"][:, 1]
    want = pred["latency"][:, 1] * np.exp(_true_correction(X_new, loaded))
    assert np.median(np.abs(fixed / want - 1)) < 0.05
    assert np.median(np.abs(pred["latency"][:, 1] / want - 1)) > 0.1


def test_applied_band_is_sorted_and_no_narrower_than_loo_residuals(loaded):
    cal, X, _ = _fit(loaded, collect_fingerprint())
    pred = loaded.predict(X)
    out = cal.apply(X, pred, loaded.predictor.priors_["latency"])["latency"]
    assert np.all(np.diff(out, axis=1) >= 0)
    assert np.all(np.log(out[:, 0]) <= np.log(out[:, 1]) + cal.band[0] + 1e-9)
    assert np.all(np.log(out[:, 2]) >= np.log(out[:, 1]) + cal.band[1] - 1e-9)
    assert set(out.shape) == {len(X), 3}


def test_no_correction_is_kept_when_the_bundle_alone_does_better(loaded):
    """Measured latencies the bundle already predicts up to noise: any fitted correction would
    only add its own error on held-out networks, so the medians stay where the bundle put them."""
    fp = collect_fingerprint()
    X = _features(fp)
    pred = loaded.predict(X)
    noise = np.random.default_rng(0).normal(0.0, 0.08, len(X))
    cal = C.fit_calibration(X, pred["latency"][:, 1] * np.exp(noise), pred, loaded.predictor.priors_["latency"],
                            device="d", fingerprint=fp, threads=1, bundle_version=loaded.version)
    assert cal.metrics["no_correction"] is True
    assert not np.any(cal.coef)
    out = cal.apply(X, pred, loaded.predictor.priors_["latency"])["latency"]
    assert np.allclose(out[:, 1], pred["latency"][:, 1])
    assert any(line.strip().startswith("no correction") for line in C.summary_lines(cal))
    # and a real device difference is still corrected
    assert _fit(loaded, fp)[0].metrics["no_correction"] is False


def test_too_few_rows_is_an_option_error(loaded):
    fp = collect_fingerprint()
    X = _features(fp, networks=NETWORKS[:1], specs=SPECS[:2])
    pred = loaded.predict(X)
    with pytest.raises(OptionError, match="at least 6"):
        C.fit_calibration(X, pred["latency"][:, 1], pred, loaded.predictor.priors_["latency"], device="d",
                          fingerprint=fp, threads=1, bundle_version=loaded.version)


def test_energy_from_measured_power_when_the_bundle_has_none(loaded):
    fp = collect_fingerprint()
    X = _features(fp)
    pred = loaded.predict(X)
    pred.pop("energy", None)
    lat = pred["latency"][:, 1] * 1.2
    watts = np.where(C.mode_flags(X)[:, 2] > 0, 4.0, 6.0)  # int8 draws less here
    cal = C.fit_calibration(X, lat, pred, loaded.predictor.priors_["latency"], device="d", fingerprint=fp,
                            threads=1, bundle_version=loaded.version, energy_mj=lat * watts)
    assert cal.power["quant_full_int"][1] == pytest.approx(4.0)
    assert cal.power["float32"][1] == pytest.approx(6.0)
    out = cal.apply(X, pred, loaded.predictor.priors_["latency"])
    assert np.allclose(out["energy"][:, 1], out["latency"][:, 1] * watts)


def test_file_round_trip_and_refusals(loaded, tmp_path):
    cal, _, _ = _fit(loaded, collect_fingerprint())
    path = cal.save(tmp_path)
    assert path.name == f"{cal.fingerprint_id}-t1.json"
    again = C.load_calibration(path)
    assert again == cal
    path.write_text("{not json")
    with pytest.raises(BundleError, match="cannot read calibration"):
        C.load_calibration(path)
    d = cal.to_dict()
    d["format"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match="newer"):
        C.load_calibration(path)
    d = cal.to_dict()
    d["coef"] = d["coef"][:3]
    path.write_text(json.dumps(d))
    with pytest.raises(BundleError, match="coefficients"):
        C.load_calibration(path)


def test_find_refuses_another_bundles_calibration_with_a_note(loaded, tmp_path):
    fp = collect_fingerprint()
    cal, _, _ = _fit(loaded, fp)
    cal.save(tmp_path)
    found, note = C.find_calibration(fp, 1, loaded.version, tmp_path)
    assert found == cal and "calibrated for this device" in note
    found, note = C.find_calibration(fp, 1, "some-other-version", tmp_path)
    assert found is None and "--refit" in note
    assert C.find_calibration(fp, 2, loaded.version, tmp_path) == (None, None)  # other thread count


def test_recommend_applies_the_calibration(bundle_dir, loaded):
    fp = collect_fingerprint()
    plain = Advisor.load(bundle_dir).recommend("mobilenet_v2@96", budget_ms=1e6).to_dict()
    assert plain["predictor"]["calibration"] is None
    cal, _, _ = _fit(loaded, fp)
    cal.save()
    adv = Advisor.load(bundle_dir)
    rec = adv.recommend("mobilenet_v2@96", budget_ms=1e6).to_dict()
    assert rec["predictor"]["calibration"]["device"] == "sim-new"
    assert any("calibrated for this device" in line for line in rec["explanation"])
    X = F.feature_matrix(resolve_profile("mobilenet_v2@96"), ["none"], F.device_features(fp, 1))
    shift = float(np.exp(cal.correction(X, loaded.predictor.priors_["latency"]))[0])
    assert rec["baseline"]["latency_ms"]["p50"] == pytest.approx(plain["baseline"]["latency_ms"]["p50"] * shift)
    scored = adv.score(resolve_profile("mobilenet_v2@96"), list(candidate_specs()), fp)
    assert scored["latency_ms"].shape[1] == 3


def test_answer_path_with_a_calibration_imports_nothing_heavy(bundle_dir, loaded, tmp_path):
    cal, _, _ = _fit(loaded, collect_fingerprint())
    cal.save(tmp_path / "cals")
    program = BLOCK_HEAVY + f"""
from advisor.api import Advisor
rec = Advisor.load({str(bundle_dir)!r}).recommend("resnet50", budget_ms=50).to_dict()
assert rec["predictor"]["calibration"] is not None, rec["explanation"]
print("ok")
"""
    env = {"ADVISOR_CALIBRATIONS": str(tmp_path / "cals"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_shipped_reference_plan_is_at_most_20_configurations_over_every_mode():
    from measure.calibrate import reference_plan

    plan = reference_plan(threads=2)
    assert len(plan) <= 20
    assert {c.technique for c in plan.configs} == set(SPECS)
    assert {c.settings.threads for c in plan.configs} == {2}
    blocks = {c.model.split(":")[1] for c in plan.configs}
    assert {"residual", "inverted_residual", "dense", "lstm", "attention"} <= blocks


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


TINY_PLAN = """
name = "tiny-calibration"
device = "local"
[defaults]
threads = 1
energy = false
idle_s = 0
min_runs = 5
time_cap_s = 1
min_rounds = 2
max_rounds = 2
techniques = ["none", "ptq-dynamic"]
[[grid]]
models = ["sampled:dense:7", "sampled:inverted_residual:3", "sampled:attention:3"]
"""


@pytest.mark.tf
def test_calibrate_end_to_end_measures_fits_saves_and_refits(capsys, tmp_path, bundle_dir, tf):
    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY_PLAN)
    store = tmp_path / "store"
    code, out, err = run(capsys, "calibrate", "--device", "local", "--plan", plan, "--store", store,
                         "--bundle", bundle_dir, "--in-process", "--quiet", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["campaign"]["measured"] == 6
    cal = result["calibration"]
    assert cal["metrics"]["after"]["n"] == 6 and len(cal["reference"]) == 6
    assert cal["device"].startswith("local:") and cal["bundle_version"] == B.load(bundle_dir).version
    saved = Path(result["path"])
    assert saved.exists() and saved.name == f"{fingerprint_id(collect_fingerprint())}-t1.json"
    # The reference rows went into the dataset, and --refit fits again without measuring.
    code, out, err = run(capsys, "calibrate", "--plan", plan, "--store", store, "--bundle", bundle_dir, "--refit")
    assert code == 0, err
    assert "calibrated (LOO)" in out and "no energy in the reference rows" in out
    assert "plans/adapt-device.toml --device local" in out  # where to go for more
    assert "in-sample" not in out  # this bundle never saw the reference rows
    # Once the store holds this device's own layer probes, the answer says so instead.
    probe_plan = tmp_path / "probe.toml"
    probe_plan.write_text(TINY_PLAN.replace('"sampled:dense:7", "sampled:inverted_residual:3", "sampled:attention:3"',
                                            '"sampled:conv_kernel:0"').replace('["none", "ptq-dynamic"]', '["none"]'))
    code, _, err = run(capsys, "campaign", probe_plan, "--store", store, "--in-process", "--quiet")
    assert code == 0, err
    code, out, err = run(capsys, "calibrate", "--plan", plan, "--store", store, "--bundle", bundle_dir, "--refit")
    assert code == 0, err
    assert "the store holds 1 of this device's own layer probes" in out and "adapt-device" not in out
    # The answer path now says it is calibrated.
    code, out, err = run(capsys, "predict", "--model", "mobilenet_v2@96", "--technique", "ptq-int8",
                         "--bundle", bundle_dir, "--json")
    assert code == 0, err
    assert any("calibrated for this device" in n for n in json.loads(out)["notes"])
    # A bundle trained on the reference rows (a refit after retraining): its figures are in-sample, and said so.
    seen = B.save(B.load(bundle_dir).predictor, tmp_path / "retrained", {"evaluation": {"note": "synthetic"}},
                  training_ids=cal["reference"])
    code, out, err = run(capsys, "calibrate", "--plan", plan, "--store", store, "--bundle", seen, "--refit",
                         "--json")
    assert code == 0, err
    refit = json.loads(out)["calibration"]
    assert refit["metrics"]["reference_in_training"] == 6
    assert "trained on 6 of these rows, so the figures are in-sample" in C.Calibration.from_dict(refit).describe()


def test_refit_without_stored_rows_is_one_line_exit_2(capsys, tmp_path, bundle_dir):
    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY_PLAN)
    code, out, err = run(capsys, "calibrate", "--plan", plan, "--store", tmp_path / "empty", "--bundle",
                         bundle_dir, "--refit")
    assert code == 2
    assert err.count("\n") == 1 and "no reference rows" in err and "without --refit" in err


def test_refit_takes_a_device_the_training_data_names(capsys, tmp_path, bundle_dir):
    """Another machine's rows (named as the training data names them) can be refitted from here: the
    name is accepted, not looked up as a reachable device; with no stored rows, that is what it says."""
    plan = tmp_path / "tiny.toml"
    plan.write_text(TINY_PLAN)
    code, _, err = run(capsys, "calibrate", "--device", "sim-x86", "--plan", plan, "--store", tmp_path / "empty",
                       "--bundle", bundle_dir, "--refit")
    assert code == 2 and "no reference rows of sim-x86" in err
    code, _, err = run(capsys, "calibrate", "--device", "sim-x86", "--plan", plan, "--store", tmp_path / "empty",
                       "--bundle", bundle_dir)  # measuring needs a device it can reach
    assert code == 2 and "unknown device" in err


def test_bad_thread_count_is_exit_2(capsys, tmp_path, bundle_dir):
    code, _, err = run(capsys, "calibrate", "--threads", "0", "--store", tmp_path / "s", "--bundle", bundle_dir,
                       "--refit")
    assert code == 2 and "--threads" in err
