"""The measurement agent: runs .tflite files on the device it sits on and prints JSON.

Self-contained on purpose: it needs only Python (3.6 or newer), numpy and a TFLite
interpreter (`ai-edge-litert`, `tflite-runtime` or TensorFlow, whichever the device has).
Beside it travel three stdlib-only files of this project: `timing.py`, `energy.py` and
`fingerprint.py`. Locally it runs as `python -m measure.agent`; on a board the same files
are copied to a folder and run as `python3 agent.py`.

    agent.py run JOB.json     time (interleaved), evaluate, read energy; JSON on stdout
    agent.py mem MODEL.tflite THREADS RUNS [TOKEN_MAX]
                              peak memory of a fresh process holding one model

An integer (token) input is fed ids in 1..TOKEN_MAX-1 (the job's "token_max": the smallest
vocabulary of the model's embeddings; default 1000).

Keep this file valid Python 3.6: a Jetson TX2 stops at JetPack 4.6.
"""

import json
import os
import resource
import sys
import time

try:  # inside the project
    from advisor import fingerprint
    from measure import energy, timing
except ImportError:  # on a device: the bundle's files sit side by side
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import energy  # noqa: E402
    import fingerprint  # noqa: E402
    import timing  # noqa: E402

TOKEN_MAX = 1000

INTERPRETERS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)


def load_interpreter_class():
    """The first TFLite interpreter available here (or the one ADVISOR_INTERPRETER names)."""
    import importlib

    wanted = os.environ.get("ADVISOR_INTERPRETER")
    errors = []
    for name, module in INTERPRETERS:
        if wanted and wanted != name:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            errors.append("{}: {}".format(name, exc))
            continue
        version = _dist_version(name)
        return mod.Interpreter, {"name": name, "version": version}
    raise RuntimeError("no TFLite interpreter found ({})".format("; ".join(errors)))


def _dist_version(name):
    try:
        from importlib import metadata  # Python 3.8+
        return metadata.version(name)
    except Exception:  # noqa: BLE001 - older Pythons, or a vendored interpreter
        return None


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_bytes():
    """Peak resident memory of this process image. VmHWM first: ru_maxrss survives exec on
    Linux, so a child forked from a big parent (TensorFlow loaded) would report the parent's."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _cpu_jiffies():
    """(busy jiffies of the whole machine, jiffies of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
        return busy, int(own[11]) + int(own[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def other_cpu_share(before, after, wall_s):
    """Share of all cores' time that other processes used during a window (0 quiet .. 1 saturated).

    Timing on a machine busy with other work measures the contention, not the model: rows
    whose share is high are flagged so the predictor can leave their latency out."""
    if before is None or after is None or wall_s <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, min(1.0, other / hz / (wall_s * cores)))


def _runqueue_wait_ns():
    """Nanoseconds this process's threads have spent runnable but waiting for a CPU, or None.

    From /proc/self/task/*/schedstat ("run time, run-queue wait, timeslices"): unlike a share
    of the machine's busy time, which cannot tell one other busy core from ten threads fighting
    for two, the wait is exactly the time the timed code was kept off a CPU."""
    try:
        total = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open("/proc/self/task/%s/schedstat" % tid) as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended between listdir and open
        return total
    except OSError:
        return None


def cpu_wait_share(before, after, wall_s, threads):
    """Run-queue wait per thread over the window, as a share of wall time (0: never kept waiting).

    Measured on the project's 2-core machine (bench/results/contention.md): one busy process
    beside a 1-thread timing leaves it near 0 and its latency unchanged; more runnable threads
    than cores push it up, and the latency with it."""
    if before is None or after is None or wall_s <= 0:
        return None
    return max(0.0, (after - before) / 1e9 / (wall_s * max(int(threads), 1)))


class Runner(object):
    """One loaded model: feeds float inputs (quantizing when the model wants integers)."""

    def __init__(self, interpreter_class, path, threads):
        self.interpreter = interpreter_class(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.inp["shape"])

    def prepare(self, x):
        """Cast or quantize one batch-1 input to what the model takes."""
        import numpy as np

        dtype = self.inp["dtype"]
        x = np.asarray(x).reshape(self.input_shape)
        if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
            scale, zero = self.inp["quantization"]
            if scale:
                info = np.iinfo(dtype)
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return x.astype(dtype)

    def run(self, prepared):
        self.interpreter.set_tensor(self.inp["index"], prepared)
        self.interpreter.invoke()

    def scores(self):
        import numpy as np

        y = self.interpreter.get_tensor(self.out["index"]).astype(np.float32)
        scale, zero = self.out["quantization"]
        if scale and np.issubdtype(self.out["dtype"], np.integer):
            y = (y - zero) * scale
        return y.reshape(-1)


def _sample_input(runner, eval_x, seed=0, token_max=TOKEN_MAX):
    import numpy as np

    if eval_x is not None and len(eval_x):
        return runner.prepare(eval_x[0])
    rng = np.random.RandomState(seed)
    if np.issubdtype(runner.inp["dtype"], np.integer) and not runner.inp["quantization"][0]:
        # Token ids an embedding can look up: one past its vocabulary fails GATHER on the board.
        return rng.randint(1, max(2, int(token_max)), size=runner.input_shape).astype(runner.inp["dtype"])
    return runner.prepare(rng.uniform(0, 1, size=runner.input_shape).astype("float32"))


def evaluate(runner, x, top=5):
    """Top-k class indices per sample (the host computes the metrics)."""
    import numpy as np

    out = []
    for sample in x:
        runner.run(runner.prepare(sample))
        s = runner.scores()
        k = min(top, s.shape[0])
        out.append([int(i) for i in np.argsort(-s, kind="stable")[:k]])
    return out


def run_job(job):
    """Run one job (see module doc); returns the JSON-ready result."""
    interpreter_class, interp_info = load_interpreter_class()
    threads = int(job.get("threads", 1))
    runners = []
    for m in job["models"]:
        runners.append((m["label"], Runner(interpreter_class, m["path"], threads)))

    eval_x = None
    ev = job.get("eval")
    if ev:
        import numpy as np

        data = np.load(ev["npz"])
        eval_x = data["x"][: int(ev.get("max_samples", len(data["x"])))]

    result = {"interpreter": interp_info, "threads": threads, "fingerprint": fingerprint.collect_fingerprint(),
              "results": {}}

    sensor, reason = energy.detect_sensor() if job.get("energy", True) else (None, "energy not requested")
    idle_w = None
    if sensor is not None:
        idle_w = energy.measure_idle_power(sensor, seconds=float(job.get("idle_s", 2.0)))
    token_max = int(job.get("token_max", TOKEN_MAX))
    inputs = dict((label, _sample_input(r, eval_x, token_max=token_max)) for label, r in runners)
    calls = [(label, _bind(r, inputs[label])) for label, r in runners]
    policy = timing.TimingPolicy(**job.get("policy", {}))
    cpu0, wait0, wall0 = _cpu_jiffies(), _runqueue_wait_ns(), time.monotonic()
    if sensor is not None:
        sampler = energy.PowerSampler(sensor)
        sampler.start()
        try:
            timed = timing.interleaved(calls, policy)
        finally:
            samples = sampler.stop()
    else:
        samples = None
        timed = timing.interleaved(calls, policy)
    wall = time.monotonic() - wall0
    result["cpu_other_share"] = other_cpu_share(cpu0, _cpu_jiffies(), wall)
    result["cpu_wait_share"] = cpu_wait_share(wait0, _runqueue_wait_ns(), wall, threads)

    for label, runner in runners:
        t = timed[label]
        entry = {"stats": t["stats"], "raw_ms": t["raw_ms"], "ratio_to_first": t.get("ratio_to_first"),
                 "input_dtype": str(runner.inp["dtype"].__name__), "input_shape": list(runner.input_shape)}
        if sensor is not None:
            entry["energy"] = energy.energy_per_inference(samples, t["windows"], idle_w)
            entry["energy"]["sensor"] = sensor.name
        else:
            entry["energy"] = {"energy_mj": None, "note": "no energy sensor on this device: " + reason}
        if eval_x is not None:
            entry["topk"] = evaluate(runner, eval_x)
        result["results"][label] = entry
    return result


def _bind(runner, prepared):
    def call():
        runner.run(prepared)
    return call


def memory(path, threads, runs, token_max=TOKEN_MAX):
    """Peak memory of this (fresh) process with one model loaded and run `runs` times."""
    interpreter_class, _ = load_interpreter_class()
    import numpy as np  # noqa: F401 - imported before the baseline reading, as the runner needs it

    peak_before = _peak_rss_bytes()
    rss_before = _rss_bytes()
    r = Runner.__new__(Runner)
    r.interpreter = interpreter_class(model_path=path, num_threads=threads)
    rss_loaded = _rss_bytes()
    r.interpreter.allocate_tensors()
    rss_allocated = _rss_bytes()
    r.inp = r.interpreter.get_input_details()[0]
    r.out = r.interpreter.get_output_details()[0]
    x = _sample_input(r, None, token_max=token_max)
    for _ in range(max(1, runs)):
        r.run(x)
    return {
        "peak_memory_bytes": _peak_rss_bytes(),
        "process_baseline_bytes": peak_before,
        "model_peak_delta_bytes": _peak_rss_bytes() - peak_before,
        "arena_bytes": (rss_allocated - rss_loaded) if rss_allocated and rss_loaded else None,
        "rss_before_load_bytes": rss_before,
    }


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run" and len(argv) == 2:
        with open(argv[1]) as f:
            job = json.load(f)
        out = run_job(job)
    elif argv and argv[0] == "mem" and len(argv) in (4, 5):
        out = memory(argv[1], int(argv[2]), int(argv[3]), *(int(a) for a in argv[4:]))
    else:
        sys.stderr.write(__doc__)
        return 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
