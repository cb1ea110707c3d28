"""Benchmark: the shape of the SlimNets study (pruning, low rank, distillation, quantization of a VGG on CIFAR-10).

Trains a VGG-style teacher on real CIFAR-10 images, compresses it with the project's own pipelines
(`measure.compress`), converts each result to TFLite and measures every model for real: file size and
gzip size, top-1 of the converted model on the test set, and single-thread latency on this machine,
timed interleaved in rounds with the original (`measure.timing.interleaved`). Writes the raw results
to <out>.json and a markdown table to <out>.md. Nothing is estimated or simulated.

    .venv/bin/python bench/slimnets.py [--quick] [--plans SPEC,SPEC] [--data-root DIR] [--out PATH]

Not a test: the full run takes about 40 minutes on 2 cores with the defaults (10 of them the teacher's
30 epochs; `--teacher FILE` keeps it for the next run); --quick is a smoke run (1 teacher epoch, 1
fine-tuning epoch, 1000 training and 500 test images, 3 plans, short timing) of about two minutes.
The defaults are the recipe behind the README's table: fine-tuning 8 epochs and students 32, Adam 1e-3
decayed along a cosine, on fresh flipped-and-cropped copies every epoch, pruning ramped over the first
half of the fine-tuning. Plans whose train stages are the same (`prune:0.9`
and `prune:0.9+ptq-int8`) share one trained model and differ only in conversion.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from measure.augment import AUGMENTATIONS

DEFAULT_PLANS = ("ptq-int8,prune:0.9,prune:0.9+ptq-int8,prune:0.97@large+prune:0.85@mid,"
                 "prune:0.97@large+prune:0.85@mid+ptq-int8,lowrank:0.25,lowrank:0.25+prune:0.8+ptq-int8,"
                 "distill:0.5,distill:0.5+ptq-int8,distill:0.5+prune:0.8+ptq-int8,distill:0.25,"
                 "distill:0.25+prune:0.8+ptq-int8")
#: The smoke run's plans: between them they use every code path (distill, lowrank, prune, layer-wise
#: steps, sparse float conversion, int8 conversion).
QUICK_PLANS = "distill:0.5+prune:0.9+ptq-int8,lowrank:0.25+prune:0.8+ptq-int8,prune:0.95@dense+prune:0.8"
TARGET_GZIP_RATIO = 20.0
TARGET_RETAINED = 0.95
#: Used only when no SlimNets file is found under the published folder.
SLIMNETS_FALLBACK = ("SlimNets (pruning plus distillation, VGG on CIFAR-10): 85x smaller at 96% of the original "
                     "accuracy (figure as given in this benchmark's brief; no SlimNets file in {where} to cite)")
RESULT_FORMAT = "slimnets/1"
_START = time.monotonic()


def log(msg: str) -> None:
    """A progress line on stderr with the time elapsed since start."""
    print(f"[{time.monotonic() - _START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def load_cifar(data_root: Path, train_n: int, test_n: int):
    """CIFAR-10 (the shared 10k/10k subset) scaled to [0, 1]; None when the file is absent."""
    path = data_root / "cifar10" / "cifar10_subset.npz"
    if not path.is_file():
        return None
    d = np.load(path)
    x_train = d["x_train"][:train_n].astype(np.float32) / 255.0
    x_test = d["x_test"][:test_n].astype(np.float32) / 255.0
    y_train = d["y_train"][:train_n].reshape(-1).astype(np.int64)
    y_test = d["y_test"][:test_n].reshape(-1).astype(np.int64)
    return path, x_train, y_train, x_test, y_test


def build_vgg(keras, dropout: float = 0.5):
    """VGG-style network for 32x32x3: (Conv3x3+BN+ReLU)x2 then pool, at 32, 64, 128 channels; Dense 256; 10 classes."""
    L = keras.layers
    x = inp = keras.Input((32, 32, 3), name="image")
    for i, width in enumerate((32, 64, 128)):
        for j in range(2):
            x = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i + 1}_{j + 1}")(x)
            x = L.BatchNormalization(name=f"bn{i + 1}_{j + 1}")(x)
            x = L.ReLU(name=f"relu{i + 1}_{j + 1}")(x)
        x = L.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(256, activation="relu", name="fc1")(x)
    x = L.Dropout(dropout, name="dropout")(x)
    out = L.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inp, out, name="vgg_cifar10")


def train_teacher(keras, model, x, y, epochs: int, batch: int, lr: float, seed: int) -> list[dict]:
    """Adam with cosine decay, fresh augmentation every epoch; returns per-epoch loss, accuracy, seconds."""
    from measure.augment import flip_crop

    steps = epochs * -(-len(x) // batch)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        t0 = time.monotonic()
        h = model.fit(flip_crop(x, rng), y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        secs = time.monotonic() - t0
        history.append({"epoch": epoch + 1, "loss": float(h.history["loss"][-1]),
                        "accuracy": float(h.history["accuracy"][-1]), "seconds": secs})
        log(f"teacher epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.3f}, "
            f"train acc {history[-1]['accuracy']:.3f} ({secs:.0f} s)")
    return history


def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Cast, or quantize with the tensor's scale and zero point when the model takes integers."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        scale, zero = detail["quantization"]
        if scale:
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def tflite_top1(blob: bytes, x: np.ndarray, y: np.ndarray, batch: int = 100) -> float:
    """Top-1 of a TFLite model on (x, y), run with 1 thread in batches (the input resized)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    current = None
    correct = 0
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        if len(chunk) != current:
            it.resize_tensor_input(inp["index"], [len(chunk), *x.shape[1:]])
            it.allocate_tensors()
            inp, out = it.get_input_details()[0], it.get_output_details()[0]
            current = len(chunk)
        it.set_tensor(inp["index"], _quantize_input(chunk, inp))
        it.invoke()
        scores = it.get_tensor(out["index"]).reshape(len(chunk), -1)  # argmax survives dequantization
        correct += int((scores.argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def time_models(blobs: dict[str, bytes], sample: np.ndarray, policy) -> tuple[dict, float | None]:
    """Single-image latency of each model with 1 thread, interleaved in rounds (A B C ... A B C ...)."""
    from ai_edge_litert.interpreter import Interpreter

    from measure import timing
    from measure.agent import _cpu_jiffies, other_cpu_share

    calls = []
    keep = []  # the interpreters must outlive their closures
    for label, blob in blobs.items():
        it = Interpreter(model_content=blob, num_threads=1)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        x = _quantize_input(sample[None], inp)
        keep.append(it)

        def call(it=it, idx=inp["index"], x=x):
            it.set_tensor(idx, x)
            it.invoke()

        calls.append((label, call))
    cpu0, wall0 = _cpu_jiffies(), time.monotonic()
    timed = timing.interleaved(calls, policy)
    share = other_cpu_share(cpu0, _cpu_jiffies(), time.monotonic() - wall0)
    out = {}
    for label, t in timed.items():
        rounds, pos = [], 0
        for _, _, n in t["windows"]:
            rounds.append([round(v, 4) for v in t["raw_ms"][pos:pos + n]])
            pos += n
        stats = {k: v for k, v in t["stats"].items() if k != "rounds_ms"}
        out[label] = {"median_ms": t["stats"]["median"], "ratio_to_original": t.get("ratio_to_first", 1.0),
                      "round_medians_ms": t["round_medians_ms"], "rounds_raw_ms": rounds, "stats": stats}
    return out, share


def published_reference(folder: Path) -> str:
    """SlimNets' published figure: quoted from a SlimNets file in `folder` if one exists."""
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix not in (".csv", ".md", ".txt", ".json"):
                continue
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if "slimnet" in ln.lower()]
            if "slimnet" in path.name.lower() or lines:
                quoted = "; ".join(lines[:3]) if lines else path.read_text(errors="replace").strip()[:300]
                return f"SlimNets, published (quoted from `{path}`): {quoted}"
    return SLIMNETS_FALLBACK.format(where=f"`{folder}`")


def run_plan(spec: str, teacher, data, settings, rep_x, x_test, y_test, trained: dict) -> tuple[dict, bytes | None]:
    """Compress, convert and evaluate one plan; failures are recorded, not raised.

    `trained` maps a train stage's spec to (its Compressed, the plan that trained it): a plan with
    the same train steps reuses that model (same seed, same data: it would train the same).
    """
    from advisor.techniques import Pipeline
    from measure.compress import Compressed, compress, convert

    t0 = time.monotonic()
    entry: dict = {"plan": spec}
    try:
        pipeline = Pipeline.parse(spec)
        entry["plan"] = pipeline.spec
        key = "+".join(st.spec for st in pipeline.train_steps())
        if key and key in trained:
            done, first = trained[key]
            compressed = Compressed(done.model, pipeline, done.finetune, list(done.notes), state=done.state)
            entry["train_stage_shared_with"] = first
            log(f"{spec}: train stage '{key}' already done for '{first}', reused")
        elif pipeline.is_structural and pipeline.structure.spec in trained:
            # The student (or factorised network) another plan trained, then this plan's numeric steps
            # on it, as `measure.runner` does: the same network under different compressions.
            base, first = trained[pipeline.structure.spec]
            rest = compress(base.model, pipeline.numerics, data, settings)
            compressed = Compressed(rest.model, pipeline, rest.finetune, base.notes + rest.notes, state=rest.state)
            entry["structure_shared_with"] = first
            log(f"{spec}: structure '{pipeline.structure.spec}' trained for '{first}', reused")
            trained[key] = (compressed, pipeline.spec)
        else:
            compressed = compress(teacher, pipeline, data, settings)
            if key:
                trained[key] = (compressed, pipeline.spec)
        entry["train_seconds"] = time.monotonic() - t0
        entry["parameters"] = int(compressed.model.count_params())
        entry["notes"] = list(compressed.notes)
        blob = convert(compressed, rep_x)
    except Exception as exc:  # noqa: BLE001 - one failing plan must not lose the others
        entry.update(status="failed", error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}",
                     seconds=time.monotonic() - t0)
        log(f"{spec}: FAILED: {entry['error']}")
        return entry, None
    entry.update(size_bytes=len(blob), gzip_bytes=len(gzip.compress(blob, 9)))
    try:
        entry["top1"] = tflite_top1(blob, x_test, y_test)
    except RuntimeError as exc:  # the interpreter refuses the model (e.g. XNNPACK cannot prepare a node)
        entry.update(status="failed", error=f"interpreter: {str(exc).strip().splitlines()[0][:300]}",
                     seconds=time.monotonic() - t0)
        log(f"{spec}: FAILED: {entry['error']}")
        return entry, None
    entry["status"] = "ok"
    entry["seconds"] = time.monotonic() - t0
    log(f"{spec}: {entry['size_bytes'] / 1024:.0f} KB, gzip {entry['gzip_bytes'] / 1024:.0f} KB, "
        f"top-1 {entry['top1']:.4f} ({entry['seconds']:.0f} s)")
    return entry, blob


def target_line(rows: list[dict], original: dict) -> str:
    """Whether a plan is at least 20x smaller (gzip) keeping at least 95% of the original's top-1."""
    ok = [r for r in rows if r.get("status") == "ok" and r is not original and r.get("kind") == "plan"]
    hits = [r for r in ok if r["gzip_ratio"] >= TARGET_GZIP_RATIO and r["retained"] >= TARGET_RETAINED]
    want = (f"a combination at least {TARGET_GZIP_RATIO:g}x smaller (gzip) keeping at least {TARGET_RETAINED:.0%} "
            "of the original accuracy")
    if hits:
        best = max(hits, key=lambda r: r["gzip_ratio"])
        others = [r["plan"] for r in hits if r is not best]
        return (f"**Target reached** ({want}): `{best['plan']}`, {best['gzip_ratio']:.1f}x smaller at "
                f"{best['retained']:.1%} of the original accuracy"
                + (f" (also: {', '.join(f'`{p}`' for p in others)})" if others else "") + ".")
    keeping = [r for r in ok if r["retained"] >= TARGET_RETAINED]
    closest = ""
    if keeping:
        best = max(keeping, key=lambda r: r["gzip_ratio"])
        closest = (f" Smallest plan keeping {TARGET_RETAINED:.0%}: `{best['plan']}` ({best['gzip_ratio']:.1f}x, "
                   f"{best['retained']:.1%}).")
    return f"**Target not reached** ({want}).{closest}"


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def write_markdown(path: Path, result: dict) -> str:
    """The table and its header lines; returns the text written."""
    s, fp = result["settings"], result["machine"]
    rows = result["rows"]
    lines = [
        f"# SlimNets-style study: VGG on CIFAR-10{' (smoke run, --quick)' if s['quick'] else ''}",
        "",
        f"Machine: {fp.get('cpu_model')} ({fp.get('logical_cpus')} logical CPUs, fingerprint "
        f"{result['machine_id']}); date {result['date_utc']}; TFLite (ai-edge-litert), 1 thread.",
        f"Training: teacher {_epochs(s['teacher_epochs'])} (Adam {s['teacher_lr']:g}, cosine decay, flips and "
        f"crops), fine-tuning {_epochs(s['finetune_epochs'])} (Adam {s['finetune_lr']:g}"
        f"{', cosine decay' if s.get('cosine_decay') else ''}), distillation students "
        f"{_epochs(s['finetune_epochs'] * s['distill_factor'])} from scratch "
        f"(Adam {s.get('student_lr', s['finetune_lr']):g}); batch {s['batch_size']}; "
        f"{s['train_samples']} training and {s['test_samples']} test images; seed {s['seed']}"
        + (f"; fine-tuning and students on fresh '{s['augment']}' copies each epoch" if s.get("augment") else "")
        + (f"; pruning ramps over {s['prune_ramp']:.0%} of the fine-tuning steps" if "prune_ramp" in s else "")
        + (f". Teacher weights loaded from `{s['teacher_weights']}` (trained by an earlier run of these settings)."
           if "loaded" in (result["teacher"]["history"] or [{}])[0]
           else f". Teacher training took {result['teacher']['seconds']:.0f} s."),
        f"Latency: single-image invoke, median over interleaved rounds ({result['timing']['rounds']} rounds), "
        f"as a ratio to the original in the same rounds; other processes used "
        + (f"{result['timing']['other_cpu_share']:.0%}" if result["timing"]["other_cpu_share"] is not None
           else "an unknown share")
        + " of the CPUs meanwhile. Top-1 is the converted TFLite model's, on the test images; accuracy "
          "retained = top-1 / the original's top-1.",
        "",
        "| plan | gzip size (KB) | smaller (gzip, x) | latency vs original | top-1 | accuracy retained |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| `{r['plan']}` | failed: {r.get('error', '')[:80]} | | | | |")
            continue
        lat = f"{r['latency']['ratio_to_original']:.2f}x" if r.get("latency") else "(same graph, not timed)"
        lines.append(f"| {r['label']} | {r['gzip_bytes'] / 1024:.1f} | {r['gzip_ratio']:.1f} | {lat} | "
                     f"{r['top1']:.4f} | {r['retained']:.1%} |")
    original = rows[0]
    lines += ["", target_line(rows, original), "", result["published"], ""]
    if s["quick"]:
        lines += ["Smoke run: too little training for the accuracies to mean anything; it checks that the "
                  "pipeline runs end to end.", ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--published", default=str(ROOT.parent / "shared" / "published"),
                    help="folder searched for a SlimNets file to quote")
    ap.add_argument("--plans", default=None, help=f"comma-separated specs (default: {DEFAULT_PLANS})")
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--finetune-epochs", type=int, default=8)
    ap.add_argument("--distill-factor", type=int, default=4, help="student epochs = finetune-epochs x this")
    ap.add_argument("--train-samples", type=int, default=10000)
    ap.add_argument("--test-samples", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--teacher-lr", type=float, default=1e-3)
    ap.add_argument("--finetune-lr", type=float, default=1e-3,
                    help="Adam's rate when fine-tuning the trained network (pruning, low rank, the reference)")
    ap.add_argument("--student-lr", type=float, default=1e-3,
                    help="Adam's rate for distillation students, trained from scratch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "slimnets"),
                    help="output path without suffix: writes OUT.json and OUT.md")
    ap.add_argument("--teacher", default=None,
                    help="teacher weights file (.weights.h5): loaded if it exists, else written after training")
    ap.add_argument("--constant-rate", dest="cosine", action="store_false",
                    help="hold every fine-tuning and student rate constant (default: decay it along a cosine to 5%%, "
                         "the teacher's schedule)")
    ap.add_argument("--augment", default="flip-crop", choices=[*sorted(AUGMENTATIONS), "none"],
                    help="fine-tune and train students on fresh augmented copies each epoch, as the teacher was "
                         "(default: flip-crop; none: the training images as they are)")
    ap.add_argument("--prune-ramp", type=float, default=0.5,
                    help="fraction of the fine-tuning steps over which sparsity rises (the rest recovers)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (1 epoch, 1000/500 images, 3 plans)")
    args = ap.parse_args()
    if args.augment == "none":
        args.augment = None
    if args.quick:
        args.teacher_epochs, args.finetune_epochs = 1, 1
        args.train_samples, args.test_samples = min(args.train_samples, 1000), min(args.test_samples, 500)
        args.plans = args.plans or QUICK_PLANS
    plans = [p.strip() for p in (args.plans or DEFAULT_PLANS).split(",") if p.strip()]

    loaded = load_cifar(Path(args.data_root), args.train_samples, args.test_samples)
    if loaded is None:
        print(f"slimnets: CIFAR-10 not found at {Path(args.data_root) / 'cifar10' / 'cifar10_subset.npz'} "
              "(pass --data-root)", file=sys.stderr)
        return 2
    data_path, x_train, y_train, x_test, y_test = loaded

    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from advisor.techniques import Pipeline
    from measure._tf import keras as get_keras
    from measure.compress import Compressed, FinetuneSettings, TrainData, convert, finetune_plain
    from measure.timing import TimingPolicy

    keras = get_keras()
    log(f"data {data_path}: {len(x_train)} train, {len(x_test)} test; plans: {', '.join(plans)}")
    fp = collect_fingerprint()
    keras.utils.set_random_seed(args.seed)
    teacher = build_vgg(keras)
    t0 = time.monotonic()
    cached = Path(args.teacher) if args.teacher else None
    if cached is not None and cached.is_file():
        teacher.load_weights(cached)  # Keras's own weights file: the bench's own output, not a user's
        history = [{"loaded": str(cached)}]
        log(f"teacher weights loaded from {cached}")
    else:
        history = train_teacher(keras, teacher, x_train, y_train, args.teacher_epochs, args.batch_size,
                                args.teacher_lr, args.seed)
        if cached is not None:
            teacher.save_weights(cached)
    teacher_s = time.monotonic() - t0
    rep_x = x_train[np.random.default_rng(args.seed).permutation(len(x_train))[:100]]
    data = TrainData(x_train, y_train, "dataset:cifar10")
    settings = FinetuneSettings(epochs=args.finetune_epochs, max_samples=len(x_train), batch_size=args.batch_size,
                                learning_rate=args.finetune_lr, distill_factor=args.distill_factor,
                                student_learning_rate=args.student_lr, cosine_decay=args.cosine,
                                augment=args.augment, prune_ramp=args.prune_ramp, seed=args.seed + 1)

    blob = convert(Compressed(teacher, Pipeline.parse("none"), "none"), None)
    original = {"plan": "none", "label": "original (none)", "kind": "original", "status": "ok",
                "parameters": int(teacher.count_params()), "size_bytes": len(blob),
                "gzip_bytes": len(gzip.compress(blob, 9)), "top1": tflite_top1(blob, x_test, y_test), "notes": []}
    log(f"original: {original['size_bytes'] / 1024:.0f} KB, top-1 {original['top1']:.4f}")
    rows, blobs, trained = [original], {"none": blob}, {}

    # The fair reference for fine-tuned plans: the original trained just as they are, uncompressed.
    t0 = time.monotonic()
    keras.utils.set_random_seed(args.seed)
    ref = finetune_plain(teacher, data, settings)
    ref_blob = convert(Compressed(ref, Pipeline.parse("none"), "none"), None)
    rows.append({"plan": "none", "label": "original fine-tuned as the plans are", "kind": "reference",
                 "status": "ok", "parameters": int(ref.count_params()), "size_bytes": len(ref_blob),
                 "gzip_bytes": len(gzip.compress(ref_blob, 9)), "top1": tflite_top1(ref_blob, x_test, y_test),
                 "seconds": time.monotonic() - t0,
                 "notes": [f"plain fine-tuning ({args.finetune_epochs} epochs), no compression"]})
    log(f"fine-tuned reference: top-1 {rows[-1]['top1']:.4f} ({rows[-1]['seconds']:.0f} s)")
    del ref

    for i, spec in enumerate(plans):
        log(f"plan {i + 1}/{len(plans)}: {spec}")
        keras.utils.set_random_seed(args.seed)
        entry, plan_blob = run_plan(spec, teacher, data, settings, rep_x, x_test, y_test, trained)
        entry.update(label=f"`{entry['plan']}`", kind="plan")
        rows.append(entry)
        if plan_blob is not None:
            blobs[entry["plan"]] = plan_blob

    if args.quick:
        policy = TimingPolicy(warmup=3, min_runs=5, max_runs=400, time_cap_s=5.0, min_rounds=3, max_rounds=4,
                              round_s=0.03)
    else:
        policy = TimingPolicy(warmup=10, min_runs=50, max_runs=5000, time_cap_s=240.0, rel_ci=0.02,
                              min_rounds=15, max_rounds=40, round_s=0.2)
    log(f"timing {len(blobs)} models interleaved")
    timed, share = time_models(blobs, x_test[0], policy)
    for r in rows:
        if r.get("status") != "ok":
            continue
        r["gzip_ratio"] = original["gzip_bytes"] / r["gzip_bytes"]
        r["retained"] = r["top1"] / original["top1"] if original["top1"] > 0 else float("nan")
        if r["kind"] != "reference":
            r["latency"] = timed[r["plan"]]
    n_rounds = len(timed["none"]["round_medians_ms"])
    log(f"timed in {n_rounds} rounds; original {timed['none']['median_ms']:.3f} ms median")

    result = {
        "format": RESULT_FORMAT,
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": fp, "machine_id": fingerprint_id(fp),
        "settings": {"quick": args.quick, "plans": plans, "data": str(data_path),
                     "teacher_epochs": args.teacher_epochs, "finetune_epochs": args.finetune_epochs,
                     "distill_factor": args.distill_factor, "train_samples": len(x_train),
                     "test_samples": len(x_test), "batch_size": args.batch_size, "teacher_lr": args.teacher_lr,
                     "finetune_lr": args.finetune_lr, "student_lr": args.student_lr, "seed": args.seed, "threads": 1,
                     "augment": args.augment, "prune_ramp": args.prune_ramp, "teacher_weights": args.teacher,
                     "cosine_decay": args.cosine,
                     "architecture": "VGG-style: (Conv3x3+BN+ReLU)x2+pool at 32/64/128, Dense 256, Dropout 0.5, "
                                     "Dense 10 softmax"},
        "teacher": {"seconds": teacher_s, "history": history, "parameters": original["parameters"]},
        "timing": {"policy": policy.to_dict(), "rounds": n_rounds, "other_cpu_share": share},
        "published": published_reference(Path(args.published)),
        "rows": rows,
        "seconds_total": time.monotonic() - _START,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(write_markdown(out.with_suffix(".md"), result))
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
