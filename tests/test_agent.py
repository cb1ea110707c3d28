"""The measurement agent, run for real in a subprocess on real converted models."""

import json

import numpy as np
import pytest

from measure.devices import DeviceError, LocalDevice, parse_agent_output


def test_parse_agent_output_takes_the_last_json_line():
    out = 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n{"a": 1}\n'
    assert parse_agent_output(out) == {"a": 1}
    with pytest.raises(DeviceError, match="no JSON"):
        parse_agent_output("Segmentation fault\n")
    with pytest.raises(DeviceError, match="not valid JSON"):
        parse_agent_output('{"a": \n')


@pytest.fixture(scope="module")
def tflite_pair(tmp_path_factory, tiny_cnn):
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, convert

    d = tmp_path_factory.mktemp("agent")
    rep = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    (d / "a.tflite").write_bytes(convert(Compressed(tiny_cnn, Pipeline.parse("none"), "none"), None))
    (d / "b.tflite").write_bytes(convert(Compressed(tiny_cnn, Pipeline.parse("ptq-int8"), "none"), rep))
    np.savez(d / "eval.npz", x=rep)
    return d


@pytest.mark.tf
def test_agent_times_interleaved_and_evaluates(tflite_pair):
    job = {"models": [{"label": "baseline", "path": str(tflite_pair / "a.tflite")},
                      {"label": "config", "path": str(tflite_pair / "b.tflite")}],
           "threads": 1, "policy": {"min_rounds": 3, "max_rounds": 4, "time_cap_s": 5.0},
           "eval": {"npz": str(tflite_pair / "eval.npz"), "max_samples": 6}}
    out = LocalDevice().run(tflite_pair, job)
    json.dumps(out)  # JSON all the way
    assert out["interpreter"]["name"] == "ai-edge-litert"
    for label in ("baseline", "config"):
        r = out["results"][label]
        assert r["stats"]["runs"] == len(r["raw_ms"]) >= 3
        assert len(r["stats"]["rounds_ms"]) >= 3
        assert len(r["topk"]) == 6 and len(r["topk"][0]) == 5
        assert r["energy"]["energy_mj"] is None and "no energy sensor" in r["energy"]["note"]
    assert out["results"]["config"]["ratio_to_first"] > 0
    assert out["results"]["config"]["input_dtype"] == "int8"
    # the same model ranks the same classes whatever the interpreter's input type
    assert out["results"]["baseline"]["topk"][0][0] == out["results"]["baseline"]["topk"][0][0]


@pytest.mark.tf
def test_agent_reads_peak_memory_in_a_fresh_process(tflite_pair):
    mem = LocalDevice().memory(tflite_pair / "a.tflite", threads=1, runs=2)
    assert mem["peak_memory_bytes"] > mem["process_baseline_bytes"] > 0
    assert mem["arena_bytes"] is None or mem["arena_bytes"] >= 0


def test_agent_failure_is_a_device_error(tmp_path):
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(DeviceError, match="agent failed"):
        LocalDevice().memory(tmp_path / "bad.tflite", threads=1)


def test_other_cpu_share_from_jiffies():
    import os

    from measure.agent import other_cpu_share

    hz, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count()
    # 1 s window: the machine's busy jiffies grew by a full core, all of it this process: quiet.
    assert other_cpu_share((0, 0), (hz, hz), 1.0) == 0.0
    # another process kept one core busy the whole second
    assert other_cpu_share((0, 0), (2 * hz, hz), 1.0) == pytest.approx(1 / cores)
    assert other_cpu_share(None, (1, 1), 1.0) is None


def test_predictor_leaves_out_latency_timed_on_a_busy_machine():
    import pandas as pd

    from advisor.predictor import MAX_OTHER_CPU_SHARE, prepare

    rows = pd.DataFrame([
        {"status": "ok", "technique": "none", "latency_ms_median": 2.0, "cpu_other_share": 0.0, "config_id": "a"},
        {"status": "ok", "technique": "none", "latency_ms_median": 20.0, "cpu_other_share": MAX_OTHER_CPU_SHARE + 0.3,
         "config_id": "b"},
    ])
    data = prepare(rows, {})
    assert data.latency[0] == 2.0 and np.isnan(data.latency[1])
    assert sum(v for k, v in data.dropped.items() if "busy" in k) == 1


def test_predictor_leaves_out_accuracy_fine_tuned_on_a_class_sorted_prefix():
    import pandas as pd

    from advisor.predictor import prepare

    def row(cid, technique, finetune, settings):
        return {"status": "ok", "technique": technique, "config_id": cid, "dataset": "mnist", "finetune": finetune,
                "settings_json": json.dumps(settings), "accuracy_delta_pp": -30.0, "latency_ms_median": 1.0}

    rows = pd.DataFrame([
        row("a", "prune:0.8", "dataset:mnist", {"dataset": "mnist"}),  # before the shuffled order
        row("b", "prune:0.8", "dataset:mnist", {"dataset": "mnist", "data_order": 2}),
        row("c", "ptq-int8", "none", {"dataset": "mnist"}),  # not fine-tuned: its change stands
    ])
    data = prepare(rows, {})
    assert np.isnan(data.accuracy[0]) and data.accuracy[1] == -30.0 and data.accuracy[2] == -30.0
    assert data.latency[0] == 1.0  # only the accuracy change is left out
    assert sum(v for k, v in data.dropped.items() if "class-sorted" in k) == 1


def test_run_queue_wait_is_the_signal_when_recorded():
    import pandas as pd

    from advisor.predictor import MAX_CPU_WAIT_SHARE, prepare

    # A neighbour on the other core: other share 0.5, no wait, latency trusted. A row kept waiting: left out.
    rows = pd.DataFrame([
        {"status": "ok", "technique": "none", "latency_ms_median": 2.0, "cpu_other_share": 0.5,
         "cpu_wait_share": 0.01, "config_id": "a"},
        {"status": "ok", "technique": "none", "latency_ms_median": 9.0, "cpu_other_share": 0.5,
         "cpu_wait_share": MAX_CPU_WAIT_SHARE + 0.2, "config_id": "b"},
    ])
    data = prepare(rows, {})
    assert data.latency[0] == 2.0 and np.isnan(data.latency[1])


def test_cpu_wait_share_reads_this_process_schedstat():
    import time

    from measure.agent import _runqueue_wait_ns, cpu_wait_share

    before = _runqueue_wait_ns()
    if before is None:
        pytest.skip("no /proc/self/task/*/schedstat on this system")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.05:
        pass
    after = _runqueue_wait_ns()
    share = cpu_wait_share(before, after, time.monotonic() - t0, 1)
    assert after >= before and 0.0 <= share
    assert cpu_wait_share(0, 2_000_000_000, 1.0, 2) == pytest.approx(1.0)
    assert cpu_wait_share(None, 5, 1.0, 1) is None
