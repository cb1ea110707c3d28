"""A device farm and training on Dask, on a real `distributed.LocalCluster`.

The cluster's one worker is a separate process (so what it runs must import there, and only plain
data comes back) that declares the local machine as the Dask resource `device-local`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from advisor.cli import main  # noqa: E402
from advisor.cluster import ClusterError, connect, dask_trainer  # noqa: E402
from advisor.store import Store  # noqa: E402
from measure.campaign import config_key, load_plan, run_campaign  # noqa: E402
from measure.devices import LocalDevice  # noqa: E402
from measure.farm import device_holders, device_resource, run_farm  # noqa: E402

# A 16-8-8 MLP: two techniques timed together (one group), and one more with other settings (a
# second group, so two results stream back).
PLAN = """
    name = "farm"
    [defaults]
    energy = false
    idle_s = 0
    min_runs = 3
    time_cap_s = 1
    min_rounds = 2
    max_rounds = 2
    [[grid]]
    models = ["sampled:dense:7"]
    techniques = ["ptq-dynamic", "none"]
    [[grid]]
    models = ["sampled:dense:7"]
    threads = 2
    techniques = ["ptq-float16"]
"""

# What a measurement leaves to chance: timings (and what is derived from them), the memory the
# interpreter happened to use, and when it ran. Everything else must be identical across runs.
VARYING = ("latency", "energy", "power", "memory", "arena", "rss", "runs", "rounds", "rel_ci", "ci_", "measured_at",
           "stable", "warnings", "duration", "_s")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"device-local": 1},
                      dashboard_address=None, silence_logs=50) as lc, Client(lc, set_as_default=False) as client:
        yield lc.scheduler_address, client


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cluster, keras):
    """The same plan in process and through the cluster, each into its own store."""
    root = tmp_path_factory.mktemp("farm")
    plan = load_plan(write(root / "plan.toml", PLAN))
    local, farmed = Store(root / "local"), Store(root / "farm")
    here = run_campaign(plan, store=local, device=LocalDevice(), progress=False)
    there = run_farm(plan, store=farmed, cluster=cluster[1], progress=False, isolate=False)
    return plan, local, farmed, here, there


def test_resource_names_are_device_dash_a_sanitised_name():
    assert device_resource("local") == "device-local"
    assert device_resource("tx2") == "device-tx2"
    assert device_resource("ssh://nvidia@tx2.lan:22") == "device-ssh-nvidia-tx2.lan-22"
    assert "," not in device_resource("ssh://a,b=c@d") and "=" not in device_resource("ssh://a,b=c@d")


@pytest.mark.tf
def test_a_farmed_campaign_stores_what_an_in_process_one_does(runs):
    plan, local, farmed, here, there = runs
    assert (here.measured, here.failed) == (3, 0), here.failures
    assert (there.measured, there.failed, there.skipped, there.remaining) == (3, 0, 0, 0), there.failures
    a = local.read().sort_values("config_id").reset_index(drop=True)
    b = farmed.read().sort_values("config_id").reset_index(drop=True)
    keys = {config_key(c, LocalDevice().device_id) for c in plan.configs}
    assert keys <= set(b.config_id) and list(a.config_id) == list(b.config_id)
    assert list(a.columns) == list(b.columns)
    varying = [c for c in a.columns if any(v in c for v in VARYING)]
    fixed = [c for c in a.columns if c not in varying]
    assert {"config_id", "model", "technique", "status", "size_bytes", "device", "profile_digest"} <= set(fixed)
    for column in fixed:
        assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    # Timings differ from run to run: they are there, measured, in both stores alike.
    for column in varying:
        assert (a[column].isna() == b[column].isna()).all(), column
    assert (b.latency_ms_median > 0).all()
    for digest in b.profile_digest.dropna().unique():  # the profiles came back with the rows
        assert farmed.get_profile(digest) == local.get_profile(digest)


@pytest.mark.tf
def test_a_second_farmed_run_skips_everything(runs, cluster):
    plan, _, farmed, _, _ = runs
    shards = farmed.shards()
    again = run_farm(plan, store=farmed, cluster=cluster[0], progress=False, isolate=False)
    assert (again.measured, again.failed, again.skipped, again.remaining) == (0, 0, 3, 0)
    assert farmed.shards() == shards


def test_no_worker_with_the_device_is_one_clear_error_and_nothing_stored(tmp_path, cluster, capsys):
    plan = write(tmp_path / "board.toml", 'device = "ssh://pi@board.invalid"\n' + PLAN.replace('name = "farm"', ""))
    store = Store(tmp_path / "store")
    with pytest.raises(ClusterError, match="device-ssh-pi-board.invalid") as err:
        run_farm(load_plan(plan), store=store, cluster=cluster[1], progress=False)
    assert "device-local" in str(err.value)  # what the workers do hold
    code = main(["campaign", str(plan), "--cluster", cluster[0], "--store", str(store.root), "--quiet"])
    _, stderr = capsys.readouterr()
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "dask worker" in stderr
    assert store.shards() == [] and not store.ids("failed")
    assert device_holders(cluster[1], "device-local") == sorted(cluster[1].scheduler_info()["workers"])


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        connect("tcp://127.0.0.1:1", timeout_s=1)


# ---------------------------------------------------------------------------------------------
# Training


def synthetic_store(root: Path) -> Store:
    from test_predictor import IMAGE_FAMILIES, synthetic_rows

    # Two families: too few for the held-out calibration, so one fit per component (fast).
    rows, profiles = synthetic_rows(families=IMAGE_FAMILIES[:2], per_family=4)
    store = Store(root)
    for profile in profiles.values():
        store.put_profile(profile)
    store.append(rows.to_dict("records"))
    return store


def test_train_on_the_cluster_writes_the_same_kind_of_bundle(tmp_path, cluster, capsys):
    from advisor.bundle import load
    from advisor.cli_predictor import read_training_data
    from advisor.predictor import Predictor

    store = synthetic_store(tmp_path / "store")
    code = main(["train", "--data", str(store.root), "--out", str(tmp_path / "bundle"), "--evaluate", "none",
                 "--cluster", cluster[0], "--json"])
    capsys.readouterr()
    assert code in (0, None)
    farmed = load(tmp_path / "bundle").predictor
    rows, profiles = read_training_data(store.root)
    here = Predictor().fit(rows, profiles)
    assert farmed.targets_ == here.targets_ and set(farmed.boosters_) == set(here.boosters_)
    theirs, ours = farmed.predict(rows, profiles), here.predict(rows, profiles)
    for target in here.targets_:
        ok = np.isfinite(ours[target]).all(axis=1)
        assert ok.any(), target
        # The same data, parameters and rounds; the cluster's histogram sketch may split a hair apart.
        np.testing.assert_allclose(theirs[target][ok], ours[target][ok], rtol=0.05, atol=1e-3, err_msg=target)


def test_the_dask_trainer_trains_the_same_quantile_booster(cluster):
    import json

    from advisor.features import FEATURE_NAMES
    from advisor.predictor import Predictor, train_booster

    rng = np.random.default_rng(0)
    X = np.full((300, len(FEATURE_NAMES)), np.nan)
    X[:, :3] = rng.normal(size=(300, 3))
    y = 2 * X[:, 0] + rng.normal(scale=0.5, size=300)
    params = Predictor(max_depth=3)._xgb_params()  # reg:quantileerror at quantile_alpha 0.1, 0.5, 0.9
    farmed = json.loads(dask_trainer(cluster[1])(params, X, y, 20))
    local = json.loads(train_booster(params, X, y, 20))
    for model in (farmed, local):
        assert model["learner"]["objective"]["name"] == "reg:quantileerror"
        alphas = model["learner"]["objective"]["quantile_loss_param"]["quantile_alpha"]
        assert [float(a) for a in alphas.strip("[]").split(",")] == [0.1, 0.5, 0.9]
        assert model["learner"]["learner_model_param"]["num_target"] == "3"
        assert model["learner"]["feature_names"] == list(FEATURE_NAMES)
