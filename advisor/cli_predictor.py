"""Command-line commands for the predictor: `train`, `evaluate`, `predict`.

`register(app)` adds them to the `advisor` app. `predict` is on the answer path: it reads
a bundle and a model profile and evaluates with numpy only (no xgboost, pandas or TensorFlow);
`train` and `evaluate` read the dataset store and fit XGBoost.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any, Optional

from advisor.cli_kit import App, Option, echo
from advisor.errors import OptionError
from advisor.lookup import DEFAULT_STORE, PROFILES_DIR, device_fingerprint, resolve_profile, zoo_index  # noqa: F401 - re-exported
from advisor.progress import StageProgress, reporting

# The repository's training_data/ (in a checkout or editable install), unless set.

JsonOpt = Annotated[bool, Option("--json", help="Print one JSON object for machines.")]
LatencyModeOpt = Annotated[str, Option("--latency-mode", help="composed (baseline x ratio) or direct "
                                       "(one booster): compare them with `advisor evaluate`.")]
LayerLatencyOpt = Annotated[bool, Option("--layer-latency/--no-layer-latency", help="Learn per-layer costs "
                                        "on top of the linear latency prior (advisor.layer_costs); off: "
                                        "the linear prior alone, for comparison.")]


def _emit(obj: Any) -> None:
    from advisor.cli import _emit as emit  # the app's one JSON writer (imported late: no cycle)

    emit(obj)


# ---------------------------------------------------------------------------------------------
# Inputs.


def read_training_data(data: Path) -> tuple[Any, dict]:
    """(rows, profiles by digest) from a dataset store; OptionError if it has no rows."""
    from advisor.store import Store

    store = Store(data)
    rows = store.read()
    if len(rows) == 0:
        raise OptionError(f"no measurement rows in {data} (measure some with `advisor measure --save`, "
                          "or point --data at a store)")
    profiles = {}
    for digest in rows["profile_digest"].dropna().unique():
        profile = store.get_profile(str(digest))
        if profile is not None:
            profiles[str(digest)] = profile
    return rows, profiles


def read_fingerprints(data: Path) -> dict[str, dict]:
    """The store's full device fingerprints by id (ISA flags and cores for the device features)."""
    from advisor.store import Store

    return Store(data).fingerprints()


# ---------------------------------------------------------------------------------------------
# Commands.


def train(
    data: Annotated[Path, Option("--data", help="Dataset store folder.")] = DEFAULT_STORE,
    out: Annotated[Optional[Path], Option("--out", help="Bundle folder to write (default: a new version "
                                          "models/<version>/, made current).")] = None,
    evaluate_split: Annotated[str, Option("--evaluate", help="Held-out split whose metrics go in the card: "
                                          "family, random, device, or none.")] = "family",
    latency_mode: LatencyModeOpt = "composed",
    layer_latency: LayerLatencyOpt = True,
    cluster: Annotated[Optional[str], Option(
        "--cluster", help="Train the boosters with xgboost.dask on the Dask cluster at this scheduler address "
                          "(tcp://host:8786), the held-out evaluation's too; the bundle is the same.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the predictor on every row of the store, evaluate it held-out, and save a bundle."""
    from advisor.evaluate import SPLITS, evaluate, summary_lines
    from advisor.model_versions import save_trained, train_lock
    from advisor.predictor import Predictor

    if evaluate_split not in (*SPLITS, "none"):
        raise OptionError(f"unknown --evaluate {evaluate_split!r} (valid: {', '.join(SPLITS)}, none)")
    rows, profiles = read_training_data(data)
    fingerprints = read_fingerprints(data)
    params: dict[str, Any] = {"latency_mode": latency_mode, "layer_latency": layer_latency}
    with contextlib.ExitStack() as stack:
        stack.enter_context(train_lock(out))  # one writer of models/ at a time (fails fast)
        if cluster is not None:
            from advisor.cluster import training_on

            stack.enter_context(training_on(cluster))
        stack.enter_context(reporting(StageProgress()))  # stages on stderr: training takes minutes
        predictor = Predictor(**params).fit(rows, profiles, fingerprints)
        evaluation = None if evaluate_split == "none" else evaluate(rows, profiles, split=evaluate_split,
                                                                    params=params, fingerprints=fingerprints)
    # Without --out: a new version in models/, made current (advisor.model_versions).
    path = save_trained(predictor, out, {"evaluation": evaluation}, rows["config_id"].astype(str))
    summary = {"bundle": str(path), "rows": predictor.data_summary_, "targets": list(predictor.targets_),
               "unavailable": predictor.unavailable_, "component_rows": predictor.n_rows_,
               "evaluation": evaluation}
    if as_json:
        _emit(summary)
        return
    d = predictor.data_summary_
    echo(f"trained on {d['rows']} rows ({', '.join(f'{k} {v}' for k, v in d['by_source'].items())}; "
         f"devices: {', '.join(f'{k} {v}' for k, v in d['by_device'].items())})")
    echo(f"  targets: {', '.join(predictor.targets_) or 'none'}")
    for target, reason in predictor.unavailable_.items():
        echo(f"  unavailable {target}: {reason}")
    if evaluation:
        for line in summary_lines(evaluation):
            echo(f"  {line}")
    echo(f"saved {path}")


def evaluate_command(
    split: Annotated[str, Option("--split", help="family (hold out architecture families), random, "
                                 "or device (leave one device out).")] = "family",
    data: Annotated[Path, Option("--data", help="Dataset store folder.")] = DEFAULT_STORE,
    folds: Annotated[int, Option(help="Folds for the family and random splits.")] = 5,
    seed: Annotated[int, Option(help="Seed for the fold assignment.")] = 0,
    latency_mode: LatencyModeOpt = "composed",
    layer_latency: LayerLatencyOpt = True,
    predictions: Annotated[Optional[Path], Option(
        "--predictions", help="Also write each held-out row's truth and predicted p10/p50/p90 (per target, "
        "with its family, device, plan kind and fold) to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the predictor on held-out rows, against the FLOPs-proportional baseline."""
    from advisor.evaluate import SPLITS, evaluate, summary_lines, write_predictions

    if split not in SPLITS:
        raise OptionError(f"unknown --split {split!r} (valid: {', '.join(SPLITS)})")
    if predictions is not None and not predictions.parent.is_dir():
        raise OptionError(f"--predictions: folder {predictions.parent} does not exist")
    rows, profiles = read_training_data(data)
    params = {"latency_mode": latency_mode, "layer_latency": layer_latency}
    entries: list[dict] | None = [] if predictions is not None else None
    with reporting(StageProgress()):  # stages on stderr: each fold trains a predictor
        result = evaluate(rows, profiles, split=split, seed=seed, folds=folds, params=params,
                          fingerprints=read_fingerprints(data), predictions=entries)
    if predictions is not None:
        write_predictions(predictions, entries or [])
    if as_json:
        _emit(result)
        return
    for line in summary_lines(result):
        echo(line)


def predict(
    model: Annotated[str, Option("--model", "-m", help="Zoo name (NAME or NAME@SIZE) or a PROFILE.json "
                                 "from `advisor profile --json`.")],
    technique: Annotated[str, Option("--technique", "-t", help="Technique spec, e.g. prune:0.8+ptq-int8.")],
    device: Annotated[Optional[str], Option(help="local, a board profile or configured device (`advisor "
                                            "devices`), or one in the training data (default: the "
                                            "configured default, else local).")] = None,
    threads: Annotated[int, Option(help="Interpreter threads.")] = 1,
    input_size: Annotated[Optional[int], Option(help="Input size (zoo names).")] = None,
    bundle: Annotated[Optional[Path], Option("--bundle", help="Bundle folder (default "
                                             "models/current).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict p10/p50/p90 latency, energy, size and accuracy change, compressed and uncompressed."""
    from advisor.bundle import DEFAULT_BUNDLE, load
    from advisor.devices import default_device
    from advisor.features import device_features, feature_matrix
    from advisor.predictor import TARGETS
    from advisor.techniques import Pipeline

    pipeline = Pipeline.parse(technique)
    if threads < 1:
        raise OptionError(f"--threads must be at least 1 (got {threads})")
    from advisor.api import profile_for

    profile = profile_for(model, input_size)
    loaded = load(bundle or DEFAULT_BUNDLE)
    device = device or default_device()
    fp, note = device_fingerprint(device, loaded.predictor)
    from advisor.calibration import device_notes, predict_for_device
    from advisor.composition import PlanBatch

    batch = PlanBatch.of([pipeline.spec, "none"])
    X = feature_matrix(profile, list(batch.plans), device_features(fp, threads))
    pred, calibration, calibration_note = predict_for_device(loaded, X, fp, threads)
    pred = batch.compose(pred)
    if calibration is None:
        from advisor.board_speed import board_scaling

        scaling = board_scaling(loaded, fp, threads)
        if scaling is not None:
            note = scaling.note()  # it says what the extrapolation note said, and how

    def view(i: int) -> dict:
        return {t: {"p10": float(q[i, 0]), "p50": float(q[i, 1]), "p90": float(q[i, 2]), "unit": TARGETS[t].unit}
                if bool((q[i] == q[i]).all()) else None for t, q in pred.items()}

    out = {"model": profile.model, "family": profile.family, "macs": profile.macs, "params": profile.params,
           "technique": pipeline.spec, "device": device, "threads": threads,
           "bundle": {"path": str(loaded.path), "version": loaded.version},
           "prediction": view(0), "baseline": view(1), "unavailable": loaded.predictor.unavailable_,
           "notes": device_notes(note, calibration, calibration_note)}
    from advisor.coverage import notes as coverage_notes

    out["notes"] += coverage_notes(profile, loaded.predictor)
    if as_json:
        _emit(out)
        return
    _print_prediction(out)


def _fmt(target: str, v: float) -> str:
    if target.startswith("size"):
        return f"{v / 1e6:,.3f} MB"
    if target == "accuracy_delta":
        return f"{v:+.2f} pp"
    return f"{v:,.3f} {'ms' if target == 'latency' else 'mJ'}"


def _print_prediction(out: dict) -> None:
    echo(f"{out['model']} ({out['macs'] / 1e6:,.1f} M MACs, {out['params'] / 1e6:,.2f} M params) on "
         f"{out['device']}, {out['threads']} thread(s); bundle {out['bundle']['version']}")
    w = max(len(out["technique"]), 4)
    echo(f"  {'':<{w}} {'':<14} {'p10':>14} {'p50':>14} {'p90':>14}")
    for label, view in ((out["technique"], out["prediction"]), ("none", out["baseline"])):
        for i, (target, q) in enumerate(view.items()):
            shown = label if i == 0 else ""
            if q is None:
                why = ("unknown (no training row measured the accuracy of these steps)" if target == "accuracy_delta"
                       else "n/a (no energy rows for this device)")
                echo(f"  {shown:<{w}} {target:<14} {why:>44}")
                continue
            echo(f"  {shown:<{w}} {target:<14} {_fmt(target, q['p10']):>14} {_fmt(target, q['p50']):>14} "
                 f"{_fmt(target, q['p90']):>14}")
    for target, reason in out["unavailable"].items():
        echo(f"  unavailable {target}: {reason}")
    for note in out["notes"]:
        echo(f"  note: {note}")


def register(app: App) -> None:
    """Add `train`, `evaluate` and `predict` to the `advisor` app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate_command)
    app.command("predict")(predict)
