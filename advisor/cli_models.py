"""Command-line commands for versioned bundles: `retrain`, `models`, `models use VERSION`.

`register(app)` adds them to the `advisor` app. `models` reads only the cards (no pandas
or xgboost); `retrain` reads the store and fits XGBoost.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

from advisor.cli_kit import App, Argument, Option, echo
from advisor.cli_predictor import JsonOpt, _emit
from advisor.lookup import DEFAULT_STORE
from advisor.progress import StageProgress, reporting

ModelsOpt = Annotated[Optional[Path], Option("--models", help="Models folder (default models/, or "
                                             "$ADVISOR_MODELS).")]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """From cron, a run is stopped with SIGTERM: make it unwind like Ctrl-C (temp files removed, lock released)."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def retrain_command(
    new: Annotated[Optional[list[Path]], Option("--new", help="New measurement shards: a .parquet file, a "
                                                "folder of them, or another dataset store (repeatable).")] = None,
    data: Annotated[Path, Option("--data", help="Dataset store folder.")] = DEFAULT_STORE,
    models: ModelsOpt = None,
    force: Annotated[bool, Option("--force", help="Train and compare even with no new rows.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ingest new rows (bad ones quarantined), train a challenger, promote it only if it is not worse."""
    from advisor.retrain import retrain, summary_lines

    with _sigterm_as_interrupt():
        with reporting(StageProgress()):  # stages on stderr: a retraining takes minutes
            report = retrain(new or (), data=data, models=models, force=force)
    if as_json:
        _emit(report.to_dict())
        return
    for line in summary_lines(report):
        echo(line)


models_app = App(help="List the predictor bundles, or choose the current one (`models use VERSION`).")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


@models_app.default()  # `advisor models` with no subcommand
def models_command(models: ModelsOpt = None, as_json: JsonOpt = False) -> None:
    """List the bundles: version, creation time, training rows, held-out metrics; * marks the current one."""
    from advisor import model_versions as V

    root = V.models_root(models)
    bundles = V.list_bundles(root)
    if as_json:
        _emit({"models": str(root), "current": V.champion_name(root), "bundles": [b.to_dict() for b in bundles]})
        return
    if not bundles:
        echo(f"no bundles in {root} (train one with `advisor train` or `advisor retrain`)")
        return
    width = max(len(b.name) for b in bundles)
    echo(f"  {'version':<{width}}  {'created':<20} {'rows':>6}  {'lat±10%':>7} {'size±5%':>7} "
         f"{'acc MAE':>8}  evaluation")
    for b in bundles:
        m = V.headline_metrics(b.evaluation)
        mae = "-" if m["accuracy_mae_pp"] is None else f"{m['accuracy_mae_pp']:.2f} pp"
        split = (b.evaluation or {}).get("split") or "none"
        extra = []
        if b.version and b.version != b.name:
            extra.append(f"version {b.version}")
        if b.retrain:
            extra.append(f"retrain: {b.retrain.get('decision')}")
        if b.problem:
            extra.append(f"unusable: {b.problem}")
        echo(f"{'*' if b.current else ' '} {b.name:<{width}}  {str(b.created or '-'):<20} "
             f"{str(b.rows if b.rows is not None else '-'):>6}  {_pct(m['latency_within_10pct']):>7} "
             f"{_pct(m['size_within_5pct']):>7} {mae:>8}  {split}"
             + (f"  ({'; '.join(extra)})" if extra else ""))
    echo("* current (what `advisor recommend` and `predict` load)")


@models_app.command("use")
def models_use(
    version: Annotated[str, Argument(help="The bundle to make current: its folder name or card version.")],
    models: ModelsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a bundle the current one (roll back or forward), atomically."""
    from advisor import model_versions as V

    chosen = V.use(models, version)
    if as_json:
        _emit(chosen.to_dict())
        return
    version = f", version {chosen.version}" if chosen.version and chosen.version != chosen.name else ""
    echo(f"current is now the bundle {chosen.name}/ (created {chosen.created}{version}, {chosen.rows} rows)")


def register(app: App) -> None:
    """Add `retrain` and the `models` group to the `advisor` app."""
    app.command("retrain")(retrain_command)
    app.add_app(models_app, name="models")
