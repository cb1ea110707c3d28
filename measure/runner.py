"""Measure one configuration and its uncompressed baseline, end to end, into dataset rows.

resolve model -> profile -> data -> compress + convert (config and baseline) -> the device's
agent times both interleaved, evaluates, reads energy -> a fresh process per model reads
peak memory -> two rows with provenance.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import advisor
from advisor import fingerprint
from advisor.errors import AdvisorError, OptionError, UnsupportedError
from advisor.limits import blocked
from advisor.profile import ModelProfile
from advisor.store import SCHEMA_VERSION, Store, config_id, utc_now_iso
from advisor.techniques import Pipeline
from measure.compress import FinetuneSettings, TrainData
from measure.datasets import SAMPLE_ORDER

Progress = Callable[[str], None]

#: ResolvedModel.kind -> the row's model_kind.
MODEL_KINDS = {"zoo": "zoo", "sampled": "sampled", "file": "file", "tflite": "file"}


@dataclass(frozen=True)
class MeasureSettings:
    """Everything besides model, technique and device that defines a configuration."""

    input_size: int | None = None
    width: float | None = None
    num_classes: int | None = None
    threads: int = 1
    dataset: str | None = None
    data_root: str | None = None
    eval_samples: int = 500
    finetune_epochs: int = 1
    finetune_samples: int = 1024
    # Train the freshly built (randomly initialised) network on --data first, so that accuracy
    # before and after compression means something. 0: measure the model as it is.
    pretrain_epochs: int = 0
    energy: bool = True
    idle_s: float = 2.0
    seed: int = 0
    # The timing rule (see measure.timing.TimingPolicy).
    rel_ci: float = 0.05
    min_runs: int = 10
    max_runs: int = 2000
    time_cap_s: float = 30.0
    min_rounds: int = 5
    max_rounds: int = 40

    def __post_init__(self) -> None:
        checks = [
            (self.threads >= 1, f"--threads must be at least 1, got {self.threads}"),
            (self.eval_samples >= 1, f"--eval-samples must be at least 1, got {self.eval_samples}"),
            (self.input_size is None or self.input_size >= 8, f"--input-size too small: {self.input_size}"),
            (self.width is None or 0 < self.width <= 4, f"--width must be in (0, 4], got {self.width}"),
            (0 < self.rel_ci < 1, f"the interval target must be in (0, 1), got {self.rel_ci}"),
            (1 <= self.min_runs <= self.max_runs, "min runs must be at least 1 and at most max runs"),
            (self.time_cap_s > 0, "the time cap must be positive"),
            (self.finetune_epochs >= 1, "fine-tuning needs at least one epoch"),
            (self.pretrain_epochs >= 0, "pretraining epochs cannot be negative"),
            (self.pretrain_epochs == 0 or self.dataset, "pretraining needs a dataset (--data)"),
        ]
        for ok, message in checks:
            if not ok:
                raise OptionError(message)

    def policy(self) -> dict:
        return {"rel_ci": self.rel_ci, "min_runs": self.min_runs, "max_runs": self.max_runs,
                "time_cap_s": self.time_cap_s, "min_rounds": self.min_rounds, "max_rounds": self.max_rounds}


@dataclass
class Measurement:
    """The rows of one measurement: the configuration and, unless it is `none`, its baseline."""

    row: dict
    baseline: dict | None
    notes: list[str] = field(default_factory=list)
    profile: ModelProfile | None = None
    extra: list[dict] = field(default_factory=list)  # e.g. the fine-tuned accuracy reference

    def save(self, store: Store) -> Path:
        """Append the rows (and keep the profile they refer to) in `store`."""
        if self.profile is not None:
            store.put_profile(self.profile)
        return store.append(self.rows())

    def rows(self) -> list[dict]:
        return [r for r in (self.baseline, *self.extra, self.row) if r is not None]


def _library_versions() -> dict:
    from advisor.versions import MEASURE_DISTS, library_versions

    return library_versions(MEASURE_DISTS)


def _settings_key(settings: MeasureSettings, resolved, finetune: str) -> dict:
    """The settings that make a configuration distinct (and so enter its config id)."""
    return {"input_size": resolved.input_size, "width": resolved.width, "num_classes": resolved.num_classes,
            "threads": settings.threads, "dataset": settings.dataset, "finetune": finetune,
            "eval_samples": settings.eval_samples if settings.dataset else None,
            "finetune_epochs": settings.finetune_epochs if finetune != "none" else None,
            "pretrain_epochs": settings.pretrain_epochs or None,
            # How the dataset's samples were ordered (a dataset's first samples are the ones
            # fine-tuning and evaluation take): rows from before `SAMPLE_ORDER` have none.
            "data_order": SAMPLE_ORDER if settings.dataset else None,
            # Another seed initialises, trains and fine-tunes the network anew on other splits: another
            # configuration (its accuracy change is a second draw). Seed 0 adds nothing, so stored ids hold.
            "seed": settings.seed or None}


def pretrain(model, data: TrainData, epochs: int, seed: int = 0) -> None:
    """Train a freshly built network on real data (Adam, sparse cross-entropy), in place."""
    from measure._tf import keras

    keras().utils.set_random_seed(seed)
    for layer in model.layers:
        # With a few hundred steps, the default 0.99 momentum leaves BatchNorm's moving
        # statistics near their initial values: 99% accuracy in training mode, 25% at inference.
        if isinstance(layer, keras().layers.BatchNormalization):
            layer.momentum = 0.9
    act = getattr(model.layers[-1], "activation", None)
    logits = getattr(act, "__name__", "") not in ("softmax", "sigmoid")
    model.compile(optimizer=keras().optimizers.Adam(1e-3),
                  loss=keras().losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
    batch = 1 if model.inputs[0].shape[0] == 1 else 64  # recurrent zoo networks have a fixed batch of 1
    model.fit(data.x, data.y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)


def _gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def measure(model: str, technique: str, device, settings: MeasureSettings = MeasureSettings(),
            progress: Progress | None = None) -> Measurement:
    """Compress, convert and measure `model` under `technique` and under `none`, interleaved.

    Raises:
        AdvisorError subclasses for every input the user can get wrong.
    """
    outcome = measure_many(model, [technique], device, settings, progress)[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def measure_many(model: str, techniques: list[str], device, settings: MeasureSettings = MeasureSettings(),
                 progress: Progress | None = None) -> list[Measurement | AdvisorError]:
    """Measure one model under several techniques in one interleaved device run.

    The model is built, profiled and converted uncompressed once; every technique is applied to
    it in turn, and the baseline and all compressed models are timed together in the same
    rounds (A B C ... A B C ...), so every ratio to the baseline is drift-free. A technique that
    fails (unsupported layer, conversion error) yields its error in its place; the others go on.

    Raises:
        AdvisorError subclasses for errors that concern the model or settings as a whole.
    """
    from measure import datasets as ds_mod
    from measure.compress import Compressed, compress, convert, finetune_plain
    from measure.loading import resolve_model
    from measure.profiling import profile_model
    from measure.quality import topk_metrics

    say = progress or (lambda _msg: None)
    pipelines = [Pipeline.parse(t) for t in techniques]
    say(f"resolving model {model}")
    num_classes = settings.num_classes
    data = None
    if settings.dataset:
        say(f"loading dataset {settings.dataset}")
        data = ds_mod.load_dataset(settings.dataset, data_root=settings.data_root, seed=settings.seed)
        if not Path(model).exists():  # a zoo or sampled network gets the dataset's classifier
            num_classes = num_classes or data.num_classes
    resolved = resolve_model(model, input_size=settings.input_size, width=settings.width,
                             num_classes=num_classes, seed=settings.seed)
    if resolved.kind == "tflite" and any(not p.is_baseline for p in pipelines):
        spec = next(p.spec for p in pipelines if not p.is_baseline)
        raise OptionError(f"a .tflite file is measured as it is: technique must be 'none', not '{spec}' "
                          "(give the Keras model to compress it)")

    profile = None
    # label -> (pipeline, tflite bytes, finetune source, notes); failures kept per position
    blobs: dict[str, tuple[Pipeline, bytes, str, list[str]]] = {}
    outcomes: list[Measurement | AdvisorError | None] = [None] * len(pipelines)
    eval_x = eval_y = None
    token_max: int | None = None  # token ids fed to an integer input stay below it (None: unknown)
    if resolved.keras_model is not None:
        kmodel = resolved.keras_model
        profile = profile_model(kmodel, model=resolved.key, family=resolved.family, domain=resolved.domain)
        token_max = embedding_vocab(kmodel)
        input_shape = tuple(int(d) for d in kmodel.inputs[0].shape[1:])
        input_dtype = kmodel.inputs[0].dtype.name
        model_classes = int(kmodel.outputs[0].shape[-1])
        fitted = None
        if data is not None:
            fitted = ds_mod.fit_to_model(data, input_shape, input_dtype, vocab_size=token_max or ds_mod.TEXT_VOCAB_SIZE,
                                         model_classes=model_classes)
            train = TrainData(fitted.x_train, fitted.y_train, f"dataset:{fitted.name}")
            if settings.pretrain_epochs:
                if resolved.kind == "file":
                    raise OptionError("pretraining is for zoo and sampled networks; a model file is measured "
                                      "with the weights it has")
                say(f"training on {fitted.name} for {settings.pretrain_epochs} epoch(s)")
                pretrain(kmodel, train, settings.pretrain_epochs, settings.seed)
                resolved = dataclasses.replace(resolved, weights="trained")
            representative = ds_mod.representative_samples(fitted, n=100, seed=settings.seed)
            eval_x = fitted.x_test[: settings.eval_samples]
            eval_y = fitted.y_test[: settings.eval_samples]
        else:
            rnd = ds_mod.random_dataset(input_shape, input_dtype, model_classes,
                                        vocab_size=token_max or ds_mod.TEXT_VOCAB_SIZE,
                                        n=min(256, settings.finetune_samples), seed=settings.seed)
            train = TrainData(rnd.x_train, rnd.y_train, "random")
            representative = ds_mod.representative_samples(rnd, n=100, seed=settings.seed)
        ft = FinetuneSettings(epochs=settings.finetune_epochs, max_samples=settings.finetune_samples)
        say("converting the baseline")
        base_bytes = convert(Compressed(kmodel, Pipeline.parse("none"), "none"), None)
        if fitted is not None and any(p.needs_finetune for p in pipelines):
            say("fine-tuning the uncompressed model too (the fair accuracy reference)")
            ref = finetune_plain(kmodel, train, ft)
            blobs["ref"] = (Pipeline.parse("none"), convert(Compressed(ref, Pipeline.parse("none"), "none"), None),
                            train.source, list(resolved.notes) + [
                                "uncompressed, fine-tuned exactly as the techniques that fine-tune: their "
                                "accuracy reference"])
        # A structural plan with numeric steps (distill:0.5+ptq-int8) is timed against the float
        # network its structural steps built (distill:0.5), so its ratio is that of the numeric
        # steps alone; that network is built once and measured too (its row goes with the plan's).
        built: dict[str, Compressed | AdvisorError] = {}

        def structure_of(pipeline: Pipeline) -> Compressed:
            key = pipeline.structure.spec
            if key not in built:
                say(f"building {key} (fine-tuning)")
                try:
                    built[key] = compress(kmodel, pipeline.structure, train, ft)
                except AdvisorError as exc:
                    built[key] = exc
            if isinstance(built[key], AdvisorError):
                raise built[key]
            return built[key]

        for i, pipeline in enumerate(pipelines):
            if pipeline.is_baseline:
                continue
            why_not = blocked(profile, pipeline)
            if why_not is not None:  # some of these would take the process down in native code
                outcomes[i] = UnsupportedError(f"{pipeline.spec} cannot be applied to {resolved.key}: {why_not}")
                continue
            say(f"applying {pipeline.spec}" + (" (fine-tuning)" if pipeline.needs_finetune else ""))
            try:
                if pipeline.is_structural:
                    base = structure_of(pipeline)
                    compressed = base
                    if not pipeline.numerics.is_baseline:
                        rest = compress(base.model, pipeline.numerics, train if pipeline.numerics.needs_finetune
                                        else None, ft)
                        compressed = Compressed(rest.model, pipeline, rest.finetune if rest.finetune != "none"
                                                else base.finetune, base.notes + rest.notes, state=rest.state)
                    else:
                        compressed = Compressed(base.model, pipeline, base.finetune, base.notes, state=base.state)
                else:
                    compressed = compress(kmodel, pipeline, train if pipeline.needs_finetune else None, ft)
                blob = convert(compressed, representative)
            except AdvisorError as exc:
                outcomes[i] = exc
                continue
            blobs[f"t{i}"] = (pipeline, blob, compressed.finetune, list(resolved.notes) + compressed.notes)
        labels = {pipelines[int(k[1:])].spec: k for k in blobs if k.startswith("t")}
        for key, value in built.items():
            if key not in labels and not isinstance(value, AdvisorError):
                try:
                    blob = convert(value, representative)
                except AdvisorError:
                    continue  # the plans built on it have their own rows; their ratio stays unknown
                blobs[f"s{len(blobs)}"] = (value.pipeline, blob, value.finetune, list(resolved.notes) + value.notes)
    else:
        base_bytes = Path(resolved.tflite_path).read_bytes()
        if data is not None:
            raise OptionError("evaluating a .tflite file on a dataset is not supported yet: "
                              "give the Keras model, or drop --data")

    work = Path(tempfile.mkdtemp(prefix="advisor-measure-"))
    try:
        result, mems = _run_on_device(device, work, base_bytes, {k: v[1] for k, v in blobs.items()}, settings,
                                      eval_x, say, token_max)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    versions = _library_versions()
    versions["interpreter"] = result.get("interpreter")
    fp = result.get("fingerprint") or fingerprint.collect_fingerprint()
    device_id = getattr(device, "device_id", device.name)

    def row(label: str, spec: str, blob: bytes, fin: str, row_notes: list[str]) -> dict:
        r = result["results"][label]
        stats, mem, en = r["stats"], mems[label], r.get("energy") or {}
        key = _settings_key(settings, resolved, fin)
        out = {
            "schema_version": SCHEMA_VERSION, "config_id": config_id(resolved.key, spec, device_id, key),
            "status": "ok", "source": "measured",
            "model": resolved.key, "model_kind": MODEL_KINDS.get(resolved.kind, "file"),
            "family": resolved.family, "domain": resolved.domain, "input_size": resolved.input_size,
            "width": resolved.width, "weights": resolved.weights,
            "profile_digest": profile.digest if profile else None,
            "macs": profile.macs if profile else None, "params": profile.params if profile else None,
            "technique": spec, "finetune": fin, "device": device_id, "threads": settings.threads,
            "settings_json": json.dumps({**key, "policy": settings.policy()}, sort_keys=True),
            "dataset": settings.dataset,
            "size_bytes": len(blob), "size_gzip_bytes": _gzip_size(blob),
            "peak_memory_bytes": mem.get("peak_memory_bytes"), "arena_bytes": mem.get("arena_bytes"),
            "latency_ms_mean": stats["mean"], "latency_ms_median": stats["round_median"],
            "latency_ms_p90": stats["p90"], "latency_ms_min": stats["min"],
            "latency_ci95_halfwidth_rel": stats["ci95_halfwidth_rel"], "latency_runs": stats["runs"],
            "latency_rule_met": bool(stats["rule_met"]), "latency_rounds_ms": stats["rounds_ms"],
            "latency_round_spread_rel": stats["round_spread_rel"], "latency_raw_ms": r["raw_ms"],
            "cpu_other_share": result.get("cpu_other_share"), "cpu_wait_share": result.get("cpu_wait_share"),
            "energy_mj": en.get("energy_mj"), "energy_note": en.get("note"), "energy_sensor": en.get("sensor"),
            "idle_power_w": en.get("idle_power_w"), "active_power_w": en.get("active_power_w"),
            "fingerprint_id": fingerprint.fingerprint_id(fp), "cpu_model": fp.get("cpu_model"),
            "logical_cpus": fp.get("logical_cpus"), "machine": fp.get("machine"), "os": fp.get("os"),
            "accelerator": fp.get("accelerator"), "versions_json": json.dumps(versions, sort_keys=True),
            "tool_version": advisor.__version__, "measured_at": utc_now_iso(),
            "notes": "; ".join(row_notes) or None,
            # Not a column: `Store.append` keeps it once per device (store/devices/), so the
            # predictor can featurise the device with its ISA flags and core counts.
            "device_fingerprint": fp,
        }
        if "topk" in r and eval_y is not None:
            topk = np.asarray(r["topk"])
            metrics = topk_metrics(eval_y[: len(topk)], topk, resolved.num_classes)
            out.update({k: metrics.get(k) for k in ("top1", "top5", "precision", "recall", "f1")})
            out["eval_samples"] = int(metrics["n"])
        return out

    base_row = row("baseline", "none", base_bytes, "none", list(resolved.notes))
    ref_row = None
    if "ref" in blobs:
        _, blob, source, ref_notes = blobs["ref"]
        ref_row = row("ref", "none", blob, source, ref_notes)
        ref_row["baseline_config_id"] = base_row["config_id"]
        ref_row["latency_ratio_to_baseline"] = result["results"]["ref"].get("ratio_to_first")

    def accuracy(cfg_row: dict, pipeline: Pipeline) -> None:
        # Fine-tuned plans compare with the equally fine-tuned float model; the others with the model itself.
        reference = ref_row if (ref_row is not None and pipeline.needs_finetune) else base_row
        if cfg_row.get("top1") is not None and reference.get("top1") is not None:
            cfg_row["accuracy_delta_pp"] = (cfg_row["top1"] - reference["top1"]) * 100.0
            if reference is ref_row:
                cfg_row["notes"] = "; ".join(filter(None, [cfg_row.get("notes"), "accuracy change against the "
                                                           f"equally fine-tuned float model {ref_row['config_id']}"]))

    structure_rows: dict[str, tuple[str, dict]] = {}
    for label, (pipeline, blob, finetune, notes) in blobs.items():
        if label.startswith("s"):
            srow = row(label, pipeline.spec, blob, finetune, notes)
            srow["baseline_config_id"] = base_row["config_id"]
            srow["latency_ratio_to_baseline"] = result["results"][label].get("ratio_to_first")
            accuracy(srow, pipeline)
            structure_rows[pipeline.spec] = (label, srow)
    rows_by_spec: dict[str, tuple[str, dict]] = {}
    for i, pipeline in enumerate(pipelines):
        if pipeline.is_baseline:
            outcomes[i] = Measurement(base_row, None, list(resolved.notes), profile)
            continue
        label = f"t{i}"
        if label not in blobs:
            continue  # its error is already in place
        _, blob, finetune, notes = blobs[label]
        cfg_row = row(label, pipeline.spec, blob, finetune, notes)
        cfg_row["baseline_config_id"] = base_row["config_id"]
        cfg_row["latency_ratio_to_baseline"] = result["results"][label].get("ratio_to_first")
        rows_by_spec[pipeline.spec] = (label, cfg_row)
        outcomes[i] = cfg_row  # finished below, once every structural reference row exists
    attached: set[str] = set()
    for i, pipeline in enumerate(pipelines):
        cfg_row = outcomes[i]
        if not isinstance(cfg_row, dict):
            continue
        notes = blobs[f"t{i}"][3]
        extra: list[dict] = []
        if pipeline.is_structural and not pipeline.numerics.is_baseline:
            key = pipeline.structure.spec
            ref_label, ref = rows_by_spec.get(key) or structure_rows.get(key) or (None, None)
            ref_ratio = result["results"].get(ref_label, {}).get("ratio_to_first") if ref else None
            own = cfg_row["latency_ratio_to_baseline"]
            cfg_row["baseline_config_id"] = ref["config_id"] if ref else None
            cfg_row["latency_ratio_to_baseline"] = own / ref_ratio if own and ref_ratio else None
            cfg_row["notes"] = "; ".join(filter(None, [cfg_row.get("notes"), f"latency ratio against {key}, the "
                                                       "float network its structural steps built"]))
            if ref is not None and key not in rows_by_spec and key not in attached:
                attached.add(key)
                extra.append(ref)
        accuracy(cfg_row, pipeline)
        fine_tuned_ref = ref_row is not None and pipeline.needs_finetune
        outcomes[i] = Measurement(cfg_row, base_row, notes, profile,
                                  extra=extra + ([ref_row] if fine_tuned_ref else []))
    return [o for o in outcomes if o is not None]


def embedding_vocab(keras_model) -> int | None:
    """The smallest vocabulary (`input_dim`) of the model's embeddings, nested models included:
    token ids fed to the model must stay below it. None without an embedding."""
    dims = []
    for layer in getattr(keras_model, "layers", []):
        inner = getattr(layer, "layer", None)  # wrappers (pruning, quantization) hold the layer
        if hasattr(layer, "layers"):
            dims.append(embedding_vocab(layer))
        elif type(layer).__name__ == "Embedding" or type(inner).__name__ == "Embedding":
            dims.append(int((inner if inner is not None else layer).input_dim))
    dims = [d for d in dims if d]
    return min(dims) if dims else None


def _run_on_device(device, work: Path, base_bytes: bytes, blobs: dict[str, bytes], settings: MeasureSettings,
                   eval_x, say, token_max: int | None) -> tuple[dict, dict]:
    """Write the job's files to `work`, run the agent there, read peak memory per model."""
    (work / "baseline.tflite").write_bytes(base_bytes)
    models = [{"label": "baseline", "path": str(work / "baseline.tflite")}]
    for label, blob in blobs.items():
        (work / f"{label}.tflite").write_bytes(blob)
        models.append({"label": label, "path": str(work / f"{label}.tflite")})
    job = {"models": models, "threads": settings.threads, "policy": settings.policy(),
           "energy": settings.energy, "idle_s": settings.idle_s}
    if token_max is not None:  # else the agent's default
        job["token_max"] = int(token_max)
    if eval_x is not None:
        np.savez(work / "eval.npz", x=eval_x)
        job["eval"] = {"npz": str(work / "eval.npz"), "max_samples": settings.eval_samples}
    say(f"timing {len(models)} models on the device (interleaved rounds)"
        + (" and evaluating" if eval_x is not None else ""))
    result = device.run(work, job)
    say("reading peak memory")
    mems = {m["label"]: device.memory(Path(m["path"]), settings.threads, token_max=token_max) for m in models}
    return result, mems


def failure_row(model: str, technique: str, device_id: str, settings: MeasureSettings, error: str,
                family: str = "unknown", domain: str = "other") -> dict:
    """A row recording that a configuration failed, so campaigns skip or retry it knowingly."""
    fp = fingerprint.collect_fingerprint()
    key = {"input_size": settings.input_size, "width": settings.width, "num_classes": settings.num_classes,
           "threads": settings.threads, "dataset": settings.dataset}
    return {
        "schema_version": SCHEMA_VERSION, "config_id": config_id(model, technique, device_id, key),
        "status": "failed", "error": error[:1000], "source": "measured", "model": model,
        "model_kind": "sampled" if model.startswith("sampled:") else "file" if Path(model).exists() else "zoo",
        "family": family, "domain": domain, "technique": technique, "device": device_id,
        "threads": settings.threads, "input_size": settings.input_size, "width": settings.width,
        "settings_json": json.dumps({k: v for k, v in asdict(settings).items()}, sort_keys=True, default=str),
        "dataset": settings.dataset, "fingerprint_id": fingerprint.fingerprint_id(fp),
        "cpu_model": fp.get("cpu_model"), "tool_version": advisor.__version__, "measured_at": utc_now_iso(),
    }
