"""Campaign plans (schema, expansion, validation) and real tiny campaigns into a real store."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from advisor.composition import post_training_split
from advisor.errors import OptionError, SpecError, UnknownNameError
from advisor.store import Store, config_id
from advisor.techniques import Pipeline
from measure import zoo
from measure.campaign import CampaignProgress, Config, Plan, config_key, load_plan, run_campaign
from measure.devices import LocalDevice
from measure.runner import MeasureSettings
from measure.sampling import KERNEL_BLOCKS, SAMPLED_BLOCKS

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "plans"


def write(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------------
# Expansion


def test_lists_expand_to_their_product(tmp_path):
    plan = load_plan(write(tmp_path, """
        name = "grid"
        [defaults]
        threads = [1, 2]
        time_cap_s = 5
        [[grid]]
        models = ["mobilenet_v2", "resnet50"]
        input_size = [96, 128]
        techniques = ["none", "ptq-int8", "prune:0.80+ptq-int8"]
        [[grid]]
        sampled = { blocks = ["residual", "lstm"], seeds = [0, "3-4"] }
        techniques = ["ptq-dynamic", "none"]
        """))
    assert plan.name == "grid" and plan.device == "local"
    zoo_configs = [c for c in plan.configs if c.grid == 0]
    sampled_configs = [c for c in plan.configs if c.grid == 1]
    assert len(zoo_configs) == 2 * 2 * 2 * 3
    assert len(sampled_configs) == 2 * 3 * 2 * 2  # blocks x seeds x threads x techniques
    assert len(plan) == 24 + 24
    assert {c.technique for c in zoo_configs} == {"none", "ptq-int8", "prune:0.8+ptq-int8"}  # canonical
    assert {c.model for c in sampled_configs} == {f"sampled:{b}:{s}" for b in ("residual", "lstm") for s in (0, 3, 4)}
    assert all(c.settings.time_cap_s == 5.0 for c in plan.configs)
    assert all(c.settings.input_size is None for c in sampled_configs)
    assert {(c.settings.input_size, c.settings.threads) for c in zoo_configs} == {
        (96, 1), (96, 2), (128, 1), (128, 2)}


def test_none_comes_last_and_duplicates_are_dropped(tmp_path):
    plan = load_plan(write(tmp_path, """
        [[grid]]
        models = "mobilenet_v2"
        techniques = ["none", "ptq-int8"]
        [[grid]]
        models = ["mobilenet_v2", "sampled:residual:007"]
        techniques = ["ptq-int8", "ptq-dynamic"]
        """))
    assert [(c.model, c.technique) for c in plan.configs] == [
        ("mobilenet_v2", "ptq-int8"), ("mobilenet_v2", "none"), ("mobilenet_v2", "ptq-dynamic"),
        ("sampled:residual:7", "ptq-int8"), ("sampled:residual:7", "ptq-dynamic")]


def test_defaults_give_techniques_and_zoo_only_settings_skip_sampled(tmp_path):
    plan = load_plan(write(tmp_path, """
        [defaults]
        techniques = ["none"]
        input_size = 96
        [[grid]]
        models = ["resnet50", "sampled:gru:1"]
        """))
    assert [(c.model, c.settings.input_size) for c in plan.configs] == [("resnet50", 96), ("sampled:gru:1", None)]


def test_yaml_plans_read_like_toml(tmp_path):
    toml = load_plan(write(tmp_path, """
        [defaults]
        threads = [1, 2]
        [[grid]]
        models = ["mobilenet_v2"]
        width = [0.35, 0.5]
        techniques = ["none", "cluster:16+ptq-dynamic"]
        """))
    yaml = load_plan(write(tmp_path, """
        defaults: {threads: [1, 2]}
        grid:
          - models: [mobilenet_v2]
            width: [0.35, 0.5]
            techniques: [none, cluster:16+ptq-dynamic]
        """, "plan.yaml"))
    assert yaml.configs == toml.configs and len(yaml) == 8


def test_shipped_plans_load_and_cover_what_they_promise():
    smoke = load_plan(PLANS / "smoke.toml")
    assert 3 <= len(smoke) <= 4
    zoo_plan = load_plan(PLANS / "zoo.toml")
    assert {c.model for c in zoo_plan.configs} == set(zoo.ZOO)
    for name in zoo.ZOO:
        assert len({c.settings.input_size for c in zoo_plan.configs if c.model == name}) >= 2, name
    wanted = {"none", "ptq-dynamic", "ptq-float16", "ptq-int8", "qat-int8", "prune:0.5", "prune:0.8", "prune-2:4",
              "cluster:16", "cluster:32", "prune:0.8+ptq-int8", "cluster:16+ptq-dynamic", "prune:0.5+qat-int8"}
    assert {c.technique for c in zoo_plan.configs} == wanted
    sampled = load_plan(PLANS / "sampled.toml")
    models = {c.model for c in sampled.configs}
    assert len(models) >= 300
    assert {m.split(":")[1] for m in models} == set(SAMPLED_BLOCKS)
    assert {c.technique for c in sampled.configs} == {"none", "ptq-dynamic", "ptq-float16", "ptq-int8", "prune:0.8",
                                                       "cluster:16"}
    structural = load_plan(PLANS / "accuracy-structural.toml")  # accuracy of every structural kind
    assert all(c.settings.dataset and c.settings.pretrain_epochs for c in structural.configs)
    kinds = {st.name for c in structural.configs for st in Pipeline.parse(c.technique).steps}
    assert {"lowrank", "distill"} <= kinds
    assert any(Pipeline.parse(c.technique).is_layerwise for c in structural.configs)
    adapt = load_plan(PLANS / "adapt-device.toml")  # a probe of every kind the per-layer model has
    kinds = {c.model.split(":")[1] for c in adapt.configs}
    assert kinds == set(KERNEL_BLOCKS) - {"inner_depthwise_kernel"}  # (a depthwise probe between two 1x1s)
    assert len(adapt) == 800 and not any(c.model.startswith("sampled:gru_kernel") and c.technique == "ptq-int8"
                                         for c in adapt.configs)  # the converter crashes on int8 GRU
    # A second draw of accuracy.toml's configurations: the same settings but the seed.
    first = {(c.model, c.technique, c.settings.dataset): c.settings for c in load_plan(PLANS / "accuracy.toml").configs}
    seed1 = load_plan(PLANS / "accuracy-seed1.toml")
    assert len(seed1) == 130 and {c.settings.dataset for c in seed1.configs} == {"mnist", "digits", "cifar10"}
    for c in seed1.configs:
        assert c.settings.seed == 1
        assert dataclasses.replace(c.settings, seed=0) == first[(c.model, c.technique, c.settings.dataset)]
    # Post-training quantizers after distill and lowrank, each plan's parts measured beside it.
    after = load_plan(PLANS / "accuracy-ptq-after.toml")
    plans = {(c.model, c.settings.dataset): set() for c in after.configs}
    for c in after.configs:
        plans[(c.model, c.settings.dataset)].add(c.technique)
    whole = {t for t in set().union(*plans.values()) if post_training_split(t)}
    assert {t.split("+")[1] for t in whole} == {"ptq-float16", "ptq-dynamic", "ptq-int8"}
    for techniques in plans.values():
        assert all(set(post_training_split(t)) <= techniques for t in techniques if post_training_split(t))


# ---------------------------------------------------------------------------------------------
# Validation: file, block and key named


@pytest.mark.parametrize("text, error, words", [
    ("colour = 1\n[[grid]]\nmodels = ['resnet50']\ntechniques = ['none']",
     OptionError, ["unknown key 'colour'", "valid keys", "grid"]),
    ("[[grid]]\nmodels = ['resnet50']\ntechnique = ['none']",
     OptionError, ["grid[0]", "unknown key 'technique'", "techniques"]),
    ("[defaults]\nthread = 2\n[[grid]]\nmodels = ['resnet50']\ntechniques = ['none']",
     OptionError, ["defaults", "unknown key 'thread'", "threads"]),
    ("[[grid]]\nmodels = ['resnet50']\ntechniques = ['none']\n[[grid]]\nmodels = ['resnet50']\n"
     "techniques = ['prune:2']", SpecError, ["grid[1]", "prune:2", "prune"]),
    ("[[grid]]\nmodels = ['mobilenetv2']\ntechniques = ['none']",
     OptionError, ["grid[0]", "models", "mobilenetv2", "mobilenet_v2"]),
    ("[[grid]]\nmodels = ['sampled:resnet:3']\ntechniques = ['none']",
     OptionError, ["grid[0]", "sampled:resnet:3", "residual"]),
    ("[[grid]]\nsampled = {blocks = ['residual'], seeds = '9-2'}\ntechniques = ['none']",
     OptionError, ["grid[0]", "seeds", "9-2"]),
    ("[[grid]]\nsampled = {blocks = ['conv'], seeds = 1}\ntechniques = ['none']",
     OptionError, ["grid[0]", "conv", "plain"]),
    ("[[grid]]\nsampled = {blocks = 'all', seeds = 1, depth = 2}\ntechniques = ['none']",
     OptionError, ["grid[0]", "unknown key 'depth'", "blocks, seeds"]),
    ("[[grid]]\nsampled = {blocks = 'all', seeds = 1}\ninput_size = 96\ntechniques = ['none']",
     OptionError, ["grid[0]", "input_size", "sampled"]),
    ("[[grid]]\nmodels = ['inception_v3']\ninput_size = [96, 32]\ntechniques = ['none']",
     OptionError, ["grid[0]", "inception_v3", "75"]),
    ("[[grid]]\nmodels = ['resnet50']\nthreads = '2'\ntechniques = ['none']",
     OptionError, ["grid[0]", "threads", "'2'", "int"]),
    ("[[grid]]\nmodels = ['resnet50']\nthreads = 0\ntechniques = ['none']",
     OptionError, ["grid[0]", "threads"]),
    ("[[grid]]\nmodels = ['resnet50']\ndataset = 'nope'\ntechniques = ['none']",
     OptionError, ["grid[0]", "dataset 'nope'", "mnist"]),
    ("[[grid]]\nmodels = ['resnet50']", OptionError, ["grid[0]", "techniques"]),
    ("[[grid]]\ntechniques = ['none']", OptionError, ["grid[0]", "models"]),
    ("name = 'x'", OptionError, ["[[grid]]"]),
    ("device = 'jetson'\n[[grid]]\nmodels = ['resnet50']\ntechniques = ['none']", OptionError, ["device", "jetson"]),
    ("[[grid]\n", OptionError, ["not valid TOML"]),
])
def test_bad_plans_name_the_file_block_and_key(tmp_path, text, error, words):
    path = write(tmp_path, text)
    with pytest.raises(error) as info:
        load_plan(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(OptionError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")
    with pytest.raises(OptionError, match="TOML or YAML"):
        load_plan(write(tmp_path, "{}", "plan.json"))


# ---------------------------------------------------------------------------------------------
# Resume keys without TensorFlow


def test_config_keys_need_no_tensorflow():
    code = textwrap.dedent("""
        import sys
        from measure.campaign import load_plan, config_key
        keys = [config_key(c, "local:abc") for c in load_plan("plans/smoke.toml").configs]
        assert len(set(keys)) == len(keys), keys
        print("tensorflow" in sys.modules)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_config_keys_follow_what_makes_a_configuration_distinct():
    base = Config("mobilenet_v2", "prune:0.5", MeasureSettings(input_size=96, width=0.35))
    key = config_key(base, "dev")
    assert config_key(dataclasses.replace(base, settings=MeasureSettings(input_size=96, width=0.35, time_cap_s=5)),
                      "dev") == key  # the timing policy is not part of the id
    for other in (dataclasses.replace(base, technique="prune:0.8"),
                  dataclasses.replace(base, settings=MeasureSettings(input_size=128, width=0.35)),
                  dataclasses.replace(base, settings=MeasureSettings(input_size=96, width=0.35, threads=2)),
                  dataclasses.replace(base, settings=MeasureSettings(input_size=96, width=0.35, seed=1))):
        assert config_key(other, "dev") != key
    # Seed 0, the default, leaves the id as it was before the seed was part of it.
    assert key == config_id("mobilenet_v2@96-w0.35", "prune:0.5", "dev", {
        "input_size": 96, "width": 0.35, "num_classes": 1000, "threads": 1, "dataset": None, "finetune": "random",
        "eval_samples": None, "finetune_epochs": 1, "pretrain_epochs": None, "data_order": None})
    assert config_key(base, "other-device") != key
    # Defaults are filled in as the zoo fills them: width 1.0 given or not is one configuration.
    assert config_key(Config("resnet50", "none", MeasureSettings()), "d") == config_key(
        Config("resnet50", "none", MeasureSettings(input_size=224, width=1.0, num_classes=1000)), "d")
    with pytest.raises(UnknownNameError):
        config_key(Config("nope", "none", MeasureSettings()), "d")


# ---------------------------------------------------------------------------------------------
# Real campaigns (TensorFlow, the real runner, the local device)

FAST = """
    [defaults]
    energy = false
    idle_s = 0
    min_runs = 3
    time_cap_s = 2
    min_rounds = 2
    max_rounds = 3
    finetune_samples = 32
    eval_samples = 20
"""
TINY_MOBILENET = "models = ['mobilenet_v2']\ninput_size = 32\nwidth = 0.35\n"


@dataclasses.dataclass(frozen=True)
class CtrlCDevice(LocalDevice):
    """The local device, but the user presses Ctrl-C while job number `at` runs (a real SIGINT)."""

    at: int = 0
    calls: list = dataclasses.field(default_factory=list, compare=False)

    def run(self, job_dir, job):
        self.calls.append(job_dir)
        if len(self.calls) == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().run(job_dir, job)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, keras):
    """One tiny campaign: a fine-tuned config whose baseline is also a planned config, a config
    that fails (a 10-class dataset on a 2-class model), and one interrupted by Ctrl-C."""
    root = tmp_path_factory.mktemp("campaign")
    path = write(root, FAST + f"""
        [[grid]]
        {TINY_MOBILENET}
        num_classes = 10
        techniques = ["none", "prune:0.5"]
        [[grid]]
        {TINY_MOBILENET}
        num_classes = 2
        dataset = "digits"
        techniques = ["none"]
        [[grid]]
        {TINY_MOBILENET}
        num_classes = 10
        techniques = ["ptq-dynamic"]
        """)
    plan = load_plan(path)
    store = Store(root / "store")
    device = CtrlCDevice(at=2)
    stream = io.StringIO()
    # A shell that starts this run in the background ignores SIGINT (Python then keeps it ignored):
    # restore Python's own handler, as in an interactive session where Ctrl-C is pressed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        report = run_campaign(plan, store=store, device=device, progress=stream)
    finally:
        signal.signal(signal.SIGINT, previous)
    return plan, store, device, report, stream.getvalue()


@pytest.mark.tf
def test_campaign_stores_rows_under_the_keys_it_resumes_on(campaign):
    plan, store, device, report, _ = campaign
    prune, none, failing, interrupted = plan.configs
    assert (prune.technique, none.technique) == ("prune:0.5", "none")
    rows = store.read()
    ok = rows[rows.status == "ok"]
    # The compressed row and its baseline, stored under exactly the keys computed without TensorFlow.
    assert set(ok.config_id) == {config_key(prune, device.device_id), config_key(none, device.device_id)}
    pruned = ok[ok.technique == "prune:0.5"].iloc[0]
    assert pruned.finetune == "random" and pruned.model == "mobilenet_v2@32-w0.35-c10"
    assert pruned.baseline_config_id == config_key(none, device.device_id)


@pytest.mark.tf
def test_a_failing_configuration_is_stored_and_the_others_run(campaign):
    plan, store, device, report, log = campaign
    failing = plan.configs[2]
    failed = store.read(status="failed")
    assert list(failed.config_id) == [config_key(failing, device.device_id)]
    row = failed.iloc[0]
    assert "digits" in row.error and "classes" in row.error
    assert (row.model, row.model_kind, row.family, row.technique) == ("mobilenet_v2", "zoo", "mobilenet_v2", "none")
    assert report.failures == (("mobilenet_v2", "none", row.error),)
    assert "FAILED" in log and "digits" in log


@pytest.mark.tf
def test_ctrl_c_stops_after_storing_what_finished(campaign):
    plan, store, device, report, log = campaign
    assert report.interrupted
    # "none" and "prune:0.5" of one model are timed together in one device run: both measured.
    assert (report.planned, report.measured, report.skipped, report.failed, report.remaining) == (4, 2, 0, 1, 1)
    assert len(device.calls) == 2  # the failing config never reached the device
    assert "ptq-dynamic" not in set(store.read().technique)
    assert "campaign: ok 2, failed 1, skipped 0, left 1" in log


@pytest.mark.tf
def test_resuming_skips_what_is_stored(campaign):
    plan, store, device, _, _ = campaign
    shards = len(store.shards())
    finished = Plan(plan.name, plan.device, plan.configs[:3])
    again = run_campaign(finished, store=store, device=LocalDevice(), progress=False)
    assert (again.measured, again.failed, again.skipped, again.remaining) == (0, 0, 3, 0)
    assert len(store.shards()) == shards  # nothing measured, nothing written
    # The interrupted configuration is what remains; failed ones wait for retry_failed.
    rest = run_campaign(plan, store=store, device=LocalDevice(), progress=False, limit=0)
    assert (rest.skipped, rest.remaining) == (3, 1)
    retry = run_campaign(plan, store=store, device=LocalDevice(), progress=False, limit=0, retry_failed=True)
    assert (retry.skipped, retry.remaining) == (2, 2)


@pytest.mark.tf
def test_sampled_architectures_run_through_a_campaign(tmp_path, keras):
    from measure.loading import resolve_model

    name = "sampled:dense:7"
    try:
        resolve_model(name)
    except UnknownNameError:
        pytest.skip("measure.loading.resolve_model does not resolve sampled:<block>:<seed> names yet")
    plan = load_plan(write(tmp_path, FAST + f"""
        [[grid]]
        models = ["{name}"]
        techniques = ["ptq-dynamic"]
        """))
    store = Store(tmp_path / "store")
    device = LocalDevice()
    report = run_campaign(plan, store=store, device=device, progress=False)
    assert (report.measured, report.failed) == (1, 0), report.failures
    rows = store.read()
    assert config_key(plan.configs[0], device.device_id) in set(rows.config_id)
    assert set(rows.model_kind) == {"sampled"} and set(rows.family) == {"sampled-dense"}


# ---------------------------------------------------------------------------------------------
# The progress bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_prints_lines_otherwise():
    config = Config("mobilenet_v2", "ptq-int8", MeasureSettings(input_size=96))
    for stream in (Terminal(), io.StringIO()):
        bar = CampaignProgress(total=3, skipped=2, stream=stream)
        bar.start(config)
        bar.stage("converting")
        bar.finish(True)
        bar.start(config)
        bar.finish(False, "UnsupportedError: no")
        bar.close()
        text = stream.getvalue()
        assert "mobilenet_v2@96 ptq-int8" in text and "ETA" in text
        assert "campaign: ok 1, failed 1, skipped 2, left 1" in text
        if isinstance(stream, Terminal):
            assert "\r" in text and "converting" in text
            assert "failed mobilenet_v2@96 ptq-int8: UnsupportedError: no\n" in text
        else:
            assert "\r" not in text and "converting" not in text  # stage chatter only on a terminal
            assert len(text.splitlines()) == 3
    # A group measured together ends one configuration after another: each line names its own.
    stream = io.StringIO()
    bar = CampaignProgress(total=2, skipped=0, stream=stream)
    bar.start(config)
    bar.finish(True, config=config)
    bar.finish(False, "UnsupportedError: no GRU", config=Config("mobilenet_v2", "ptq-dynamic",
                                                                   MeasureSettings(input_size=96)))
    first, second = stream.getvalue().splitlines()
    assert "mobilenet_v2@96 ptq-int8 ok" in first
    assert "mobilenet_v2@96 ptq-dynamic FAILED: UnsupportedError: no GRU" in second
    quiet = io.StringIO()
    bar = CampaignProgress(total=1, skipped=0, stream=quiet, quiet=True)
    bar.start(config)
    bar.finish(True)
    bar.close()
    assert quiet.getvalue() == ""


@pytest.mark.tf
def test_isolated_campaign_survives_a_native_crash(tmp_path, monkeypatch):
    """By default each model runs in a child process: a segfault there (injected for the test,
    as the TFLite converter has done on real networks) fails only what it was measuring."""
    plan = load_plan(write(tmp_path, FAST + """
        [[grid]]
        models = ["sampled:dense:7"]
        techniques = ["ptq-dynamic", "ptq-float16"]
        """))
    monkeypatch.setenv("ADVISOR_WORKER_CRASH_ON", "ptq-float16")
    store = Store(tmp_path / "store")
    report = run_campaign(plan, store=store, progress=False)  # no device given: isolated
    assert (report.measured, report.failed) == (1, 1)
    assert "crashed" in report.failures[0][2] and report.failures[0][1] == "ptq-float16"
    rows = store.read()
    ok = rows[rows.status == "ok"]
    assert set(ok.technique) == {"none", "ptq-dynamic"}  # the survivor and its baseline
    assert store.get_profile(ok.profile_digest.iloc[0]) is not None
    again = run_campaign(plan, store=store, progress=False)
    assert (again.measured, again.skipped) == (0, 2)  # resumable: both are stored (one as failed)


def test_in_process_campaign_records_the_model_its_crashed_process_was_measuring(tmp_path):
    """`--in-process` saves a TensorFlow import per model but a native crash ends the process: the
    note it leaves of the model in flight makes the next run store those as failed and go on."""
    import json

    from measure.campaign import _inflight_path

    plan = load_plan(write(tmp_path, FAST + """
        [[grid]]
        models = ["sampled:dense:7"]
        techniques = ["ptq-dynamic", "ptq-float16"]
        """))
    store = Store(tmp_path / "store")
    keys = [config_key(c, LocalDevice().device_id) for c in plan.configs]
    note = _inflight_path(store, plan)
    note.parent.mkdir(parents=True)
    note.write_text(json.dumps({"model": "sampled:dense:7", "config_ids": keys}))  # as a crashed run leaves it
    report = run_campaign(plan, store=store, progress=False, isolate=False)
    assert (report.measured, report.failed) == (0, 2) and all("died" in f[2] for f in report.failures)
    assert not note.exists()
    assert set(store.read(status="failed").config_id) == set(keys)
    again = run_campaign(plan, store=store, progress=False, isolate=False)
    assert (again.measured, again.failed, again.skipped) == (0, 0, 2)
