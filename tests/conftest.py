"""Shared fixtures. TensorFlow costs ~9 s to import: it is imported once, lazily, per session."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see measure/_tf.py
# The repository's models/calibrations may hold this machine's calibration: no test may pick it up.
os.environ["ADVISOR_CALIBRATIONS"] = tempfile.mkdtemp(prefix="advisor-test-calibrations-")
# Nor read or fill the user's cache (profiles of model files, compiled bundle forests).
os.environ["ADVISOR_CACHE"] = tempfile.mkdtemp(prefix="advisor-test-cache-")
# Both are this run's own: gone when it ends (a run had left two folders in /tmp each time).
for _scratch in (os.environ["ADVISOR_CALIBRATIONS"], os.environ["ADVISOR_CACHE"]):
    atexit.register(shutil.rmtree, _scratch, ignore_errors=True)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("ADVISOR_DATA_ROOT", REPO.parent / "shared" / "datasets"))


def load_bench(name: str):
    """The benchmark script `bench/<name>.py` as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tf():
    """The TensorFlow module (imported once for the whole session)."""
    from measure._tf import tf as _tf

    return _tf()


@pytest.fixture(scope="session")
def keras(tf):
    from measure._tf import keras as _keras

    return _keras()


@pytest.fixture(scope="session")
def tiny_cnn(keras):
    """A real, tiny, trained-for-nothing CNN: 32x32x3 input, 10 classes, a few layers."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out, name="tiny_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The offline datasets beside the checkout; tests needing them skip with a reason when absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"../shared/datasets not present at {SHARED_DATASETS} (only in the project's workspace)")
    return SHARED_DATASETS


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run a command-line app through `advisor.cli.main` (its error handling and exit codes):
    `run_cli(app, *args)` -> (exit code, stdout, stderr)."""
    import advisor.cli

    def run(application, *args):
        monkeypatch.setattr(advisor.cli, "app", application)
        code = advisor.cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
