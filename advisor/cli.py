"""The `advisor` command line: the composition root that wires the two sides together.

Commands are functions registered on an `advisor.cli_kit.App` (a small layer over argparse);
`main` maps what they raise to exit codes.

The measurement side (TensorFlow) is imported inside the commands that need it, never at
module import, so that answering commands stay fast and TensorFlow-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

from advisor.cli_kit import App, Argument, Exit, Option, UsageError, echo
from advisor.errors import AdvisorError
from advisor.jsonable import plain
from advisor.lookup import DEFAULT_STORE

app = App(help="Should you compress your network for this device, and how? Measured, then predicted.")


JsonOpt = Annotated[bool, Option("--json", help="Print one JSON object for machines.")]


def _emit(obj) -> None:
    echo(json.dumps(obj, indent=2, sort_keys=False, default=plain))


@app.command()
def techniques(as_json: JsonOpt = False) -> None:
    """List the compression techniques and the spec grammar."""
    from advisor.techniques import TECHNIQUES

    items = [{"name": t.name, "form": t.forms, "kind": t.kind, "stage": t.stage,
              "fine_tunes": t.needs_finetune, "summary": t.summary} for t in TECHNIQUES]
    if as_json:
        _emit({"techniques": items, "combine": "steps joined by '+', in the order applied"})
        return
    width = max(len(i["form"]) for i in items)
    for i in items:
        echo(f"  {i['form']:<{width}}  {i['summary']}" + ("  [fine-tunes]" if i["fine_tunes"] else ""))
    echo("\nCombine with '+' in the order applied, e.g. prune:0.8+ptq-int8, cluster:16+ptq-dynamic.")


@app.command()
def zoo(as_json: JsonOpt = False) -> None:
    """List the networks available by name."""
    from measure.zoo import ZOO

    items = [{"name": e.name, "family": e.family, "domain": e.domain, "default_input_size": e.default_input_size,
              "min_input_size": e.min_input_size, "width": e.has_width, "description": e.description}
             for e in ZOO.values()]
    if as_json:
        _emit({"models": items})
        return
    for i in items:
        echo(f"  {i['name']:<22} {i['domain']:<5} input {i['default_input_size']:>3} "
             f"(min {i['min_input_size']})  {i['description']}")


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """Print versions and the device fingerprint, for bug reports."""
    from advisor import fingerprint
    from advisor.versions import MEASURE_DISTS, PREDICT_DISTS, library_versions

    fp = fingerprint.collect_fingerprint()
    versions = library_versions(dict.fromkeys(MEASURE_DISTS + PREDICT_DISTS + ("pyarrow",)))
    out = {"versions": versions, "fingerprint": fp, "fingerprint_id": fingerprint.fingerprint_id(fp)}
    if as_json:
        _emit(out)
        return
    for k, v in versions.items():
        echo(f"{k:<32} {v or '-'}")
    echo(f"\nfingerprint {out['fingerprint_id']}")
    for k, v in fp.items():
        echo(f"  {k:<16} {v}")


@app.command()
def profile(
    model: Annotated[str, Option("--model", "-m", help="Zoo name or model file.")],
    input_size: Annotated[Optional[int], Option(help="Input size (zoo networks).")] = None,
    width: Annotated[Optional[float], Option(help="Width multiplier (zoo networks that have one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the model profile: per layer its type, MACs, parameters and shapes."""
    from measure.loading import resolve_model
    from measure.profiling import profile_model

    resolved = resolve_model(model, input_size=input_size, width=width)
    if resolved.keras_model is None:
        raise AdvisorError(f"cannot profile a .tflite file ({model}): give the Keras model")
    prof = profile_model(resolved.keras_model, model=resolved.key, family=resolved.family, domain=resolved.domain)
    if as_json:
        _emit(prof.to_dict())
        return
    echo(f"{prof.model}  family {prof.family}  input {prof.input_shape} {prof.input_dtype}  "
         f"{prof.macs / 1e6:,.1f} M MACs  {prof.params / 1e6:,.2f} M params  depth {prof.depth}")
    for ly in prof.layers:
        if ly.macs or ly.params:
            echo(f"  {ly.name:<36} {ly.type:<22} {ly.macs / 1e6:>10,.2f} M  {ly.params:>11,}  "
                 f"{ly.output_shape}")


def _measure_view(row: dict) -> dict:
    acc = None
    if row.get("top1") is not None:
        acc = {k: row.get(k) for k in ("top1", "top5", "precision", "recall", "f1")}
        acc["samples"] = row.get("eval_samples")
    return {
        "config_id": row["config_id"], "status": row["status"],
        "size_bytes": row["size_bytes"], "size_gzip_bytes": row["size_gzip_bytes"],
        "peak_memory_bytes": row["peak_memory_bytes"], "arena_bytes": row.get("arena_bytes"),
        "latency_ms": {"mean": row["latency_ms_mean"], "median": row["latency_ms_median"],
                       "p90": row["latency_ms_p90"], "min": row["latency_ms_min"],
                       "ci95_halfwidth_rel": row["latency_ci95_halfwidth_rel"], "runs": row["latency_runs"],
                       "rule_met": row["latency_rule_met"], "rounds_ms": row["latency_rounds_ms"],
                       "round_spread_rel": row["latency_round_spread_rel"],
                       "cpu_other_share": row.get("cpu_other_share"), "cpu_wait_share": row.get("cpu_wait_share")},
        "energy_mj": row.get("energy_mj"), "energy_note": row.get("energy_note"),
        "accuracy": acc,
    }


@app.command()
def measure(
    model: Annotated[str, Option("--model", "-m", help="Zoo name (see `advisor zoo`) or a .keras/.h5/"
                                                        "SavedModel/.tflite path.")],
    technique: Annotated[str, Option("--technique", "-t", help="Technique spec, e.g. prune:0.8+ptq-int8 "
                                                               "(see `advisor techniques`).")] = "none",
    device: Annotated[Optional[str], Option(help="Device to measure on: local, ssh://user@host[:port] or a "
                                            "name from `advisor devices` (default: the configured "
                                            "default, else local).")] = None,
    input_size: Annotated[Optional[int], Option(help="Input size (zoo networks).")] = None,
    width: Annotated[Optional[float], Option(help="Width multiplier (zoo networks that have one).")] = None,
    data: Annotated[Optional[str], Option("--data", help="Labelled data: mnist, digits, cifar10, "
                                          "fashion_mnist, sms_spam, sentiment, fsdd, or a .npz/folder.")] = None,
    data_root: Annotated[Optional[str], Option(help="Folder of the offline datasets "
                                               "(default $ADVISOR_DATA_ROOT or ../shared/datasets).")] = None,
    threads: Annotated[int, Option(help="Interpreter threads.")] = 1,
    eval_samples: Annotated[int, Option(help="Test samples to evaluate (with --data).")] = 500,
    epochs: Annotated[int, Option(help="Fine-tuning epochs for techniques that fine-tune.")] = 1,
    pretrain_epochs: Annotated[int, Option(help="Train a zoo/sampled network on --data first "
                                                "(its weights are random otherwise).")] = 0,
    time_cap: Annotated[float, Option(help="Seconds at most spent timing.")] = 30.0,
    save: Annotated[bool, Option("--save", help="Append the rows to the dataset store.")] = False,
    store: Annotated[Path, Option(help="Dataset store folder.")] = DEFAULT_STORE,
    quiet: Annotated[bool, Option("--quiet", "-q", help="No progress on stderr.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure one configuration and its uncompressed baseline, timed interleaved."""
    from advisor.devices import default_device
    from advisor.progress import StageProgress
    from advisor.techniques import canonical
    from measure.devices import get_device
    from measure.runner import MeasureSettings
    from measure.runner import measure as run_measure

    spec = canonical(technique)  # fail on a bad spec before any heavy import
    dev = get_device(device or default_device())
    settings = MeasureSettings(input_size=input_size, width=width, threads=threads, dataset=data,
                               data_root=data_root, eval_samples=eval_samples, finetune_epochs=epochs,
                               pretrain_epochs=pretrain_epochs,
                               time_cap_s=time_cap)
    progress = StageProgress(total=(5 if spec != "none" else 4) + (1 if data else 0) + (1 if pretrain_epochs else 0),
                             quiet=quiet)
    try:
        result = run_measure(model, spec, dev, settings, progress)
    finally:
        progress.close()
    saved = None
    if save:
        from advisor.store import Store

        saved = str(result.save(Store(store)))
    row, base = result.row, result.baseline
    out = {"model": row["model"], "technique": row["technique"], "device": row["device"],
           "threads": row["threads"], "weights": row["weights"], "finetune": row["finetune"],
           "dataset": row["dataset"], **_measure_view(row),
           "latency_ratio_to_baseline": row.get("latency_ratio_to_baseline"),
           "accuracy_delta_pp": row.get("accuracy_delta_pp"),
           "baseline": _measure_view(base) if base else None, "notes": result.notes, "saved_to": saved}
    if as_json:
        _emit(out)
        return
    _print_measurement(out)


def _print_measurement(out: dict) -> None:
    def line(label: str, v: dict) -> str:
        lat = v["latency_ms"]
        acc = f"  top1 {v['accuracy']['top1']:.3f}" if v["accuracy"] else ""
        energy = f"{v['energy_mj']:.2f} mJ" if v["energy_mj"] is not None else "energy n/a"
        rule = "" if lat["rule_met"] else " (CI rule not met)"
        return (f"  {label:<22} {lat['median']:9.3f} ms ±{lat['ci95_halfwidth_rel'] * 100:4.1f}%{rule}"
                f"  {v['size_bytes'] / 1e6:8.3f} MB (gzip {v['size_gzip_bytes'] / 1e6:.3f})"
                f"  peak {v['peak_memory_bytes'] / 2**20:6.1f} MiB  {energy}{acc}")

    echo(f"{out['model']} on {out['device']}, {out['threads']} thread(s), weights {out['weights']}")
    if out["baseline"]:
        echo(line("none", out["baseline"]))
    echo(line(out["technique"], out))
    if out.get("latency_ratio_to_baseline") is not None:
        r = out["latency_ratio_to_baseline"]
        echo(f"  latency ×{r:.2f} against none ({'faster' if r < 1 else 'SLOWER'}), same rounds")
    if out["energy_mj"] is None and out.get("energy_note"):
        echo(f"  energy: {out['energy_note']}")
    for note in out["notes"]:
        echo(f"  note: {note}")
    if out["saved_to"]:
        echo(f"  saved to {out['saved_to']}")


@app.command()
def campaign(
    plan: Annotated[Path, Argument(help="Plan file (TOML or YAML): models x techniques x settings.")],
    store: Annotated[Path, Option(help="Dataset store folder.")] = DEFAULT_STORE,
    limit: Annotated[Optional[int], Option(help="Measure at most this many configurations now.")] = None,
    retry_failed: Annotated[bool, Option("--retry-failed", help="Measure failed ones again.")] = False,
    dry_run: Annotated[bool, Option("--dry-run", help="Validate and count; measure nothing.")] = False,
    quiet: Annotated[bool, Option("--quiet", "-q", help="No progress bar.")] = False,
    in_process: Annotated[bool, Option(
        "--in-process", help="Measure every model in this process, not one child process each: several "
                             "seconds faster per model (TensorFlow is imported once), but a native crash "
                             "in the converter ends the campaign (rerun it to resume).")] = False,
    cluster: Annotated[Optional[str], Option(
        "--cluster", help="Run on the Dask cluster at this scheduler address (tcp://host:8786): each model "
                          "goes to a worker holding the plan's device as a resource (device-NAME); rows come "
                          "back and are stored here. With --in-process, workers measure in their own process.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a measurement campaign; resumes where it stopped (finished configurations are skipped)."""
    from advisor.store import Store
    from measure.campaign import load_plan, plan_summary, run_campaign

    loaded = load_plan(plan)
    if dry_run:
        summary = plan_summary(loaded)
        if as_json:
            _emit(summary)
        else:
            echo(f"{summary['name']}: {summary['configurations']} configurations of {summary['models']} "
                 f"models on {summary['device']}")
            for k, v in summary["by_technique"].items():
                echo(f"  {k:<28} {v}")
        return
    if cluster is not None:
        from measure.farm import run_farm

        report = run_farm(loaded, store=Store(store), cluster=cluster, limit=limit, retry_failed=retry_failed,
                          progress=not quiet, isolate=not in_process)
    else:
        report = run_campaign(loaded, store=Store(store), limit=limit, retry_failed=retry_failed,
                              progress=not quiet, isolate=False if in_process else None)
    out = report.to_dict()
    if as_json:
        _emit(out)
    else:
        echo(f"{loaded.name}: measured {out['measured']}, skipped {out['skipped']} (already stored), "
             f"failed {out['failed']}, remaining {out['remaining']} in {out['elapsed_s']:.0f} s")
        for f in out.get("failures", [])[:10]:
            echo(f"  failed: {f}")
    if report.interrupted:
        raise Exit(130)
    if report.stopped:  # the device became unreachable: finished rows are stored, a rerun resumes
        raise Exit(2)


@app.command()
def recommend(
    model: Annotated[str, Option("--model", "-m", help="Zoo name (NAME or NAME@SIZE), a PROFILE.json, "
                                                        "or a .keras/.h5/SavedModel file.")],
    device: Annotated[Optional[str], Option(help="Target device: local, a board profile or configured device "
                                            "(`advisor devices`), or one in the training data (default: "
                                            "the configured default, else local).")] = None,
    budget_ms: Annotated[Optional[float], Option(help="Latency budget per inference (ms).")] = None,
    budget_mj: Annotated[Optional[float], Option(help="Energy budget per inference (mJ).")] = None,
    max_size_mb: Annotated[Optional[float], Option(help="Largest acceptable .tflite size (MB).")] = None,
    max_accuracy_drop: Annotated[Optional[float], Option(help="Largest acceptable top-1 drop "
                                                         "(percentage points).")] = None,
    objective: Annotated[str, Option(help="What to optimise once constraints hold: accuracy, latency, "
                                          "energy or size.")] = "accuracy",
    confidence: Annotated[float, Option(help="A budget counts as met when this predicted quantile "
                                             "meets it.")] = 0.9,
    top: Annotated[int, Option(help="Runners-up to show.")] = 5,
    threads: Annotated[int, Option(help="Interpreter threads on the device.")] = 1,
    input_size: Annotated[Optional[int], Option(help="Input size (zoo names).")] = None,
    bundle: Annotated[Optional[Path], Option(help="Predictor bundle (default models/current).")] = None,
    plot: Annotated[Optional[Path], Option(help="Write the Pareto front as a PNG.")] = None,
    verify: Annotated[bool, Option("--verify", help="Compress with the choice, measure it on the "
                                                     "device, compare, and store the rows.")] = False,
    data: Annotated[Optional[str], Option("--data", help="Labelled data for --verify's accuracy.")] = None,
    store: Annotated[Path, Option(help="Dataset store --verify appends to.")] = DEFAULT_STORE,
    search: Annotated[str, Option(help="whole: whole-model plans; layerwise: also search plans that "
                                       "treat layers differently (a few seconds).")] = "whole",
    as_json: JsonOpt = False,
) -> None:
    """Keep, compress (and how), or infeasible: the predicted answer, explained."""
    from advisor.api import Advisor
    from advisor.devices import default_device

    device = device or default_device()
    rec = Advisor.load(bundle).recommend(model, device, budget_ms=budget_ms, budget_mj=budget_mj,
                                         max_size_mb=max_size_mb, max_accuracy_drop=max_accuracy_drop,
                                         objective=objective, confidence=confidence, top=top, threads=threads,
                                         input_size=input_size, search=search)
    out = rec.to_dict()
    if plot is not None:
        from advisor.plot import pareto_png

        pareto_png(rec, plot)
    if verify:
        from measure.verify import verify_recommendation

        out["verification"] = verify_recommendation(rec, model=model, device=device, data=data, store=store,
                                                    threads=threads, input_size=input_size)
    if as_json:
        _emit(out)
        return
    from advisor.render import print_recommendation

    print_recommendation(out, echo)



@app.command("verify")
def verify_command(
    model: Annotated[str, Option("--model", "-m", help="Zoo name (NAME or NAME@SIZE) or a "
                                                        ".keras/.h5/SavedModel file.")],
    technique: Annotated[str, Option("--technique", "-t", help="The plan to check, e.g. "
                                                               "prune:0.8+ptq-int8 (none: the model as it is).")],
    device: Annotated[Optional[str], Option(help="The device to measure on: local, a configured board or an "
                                            "ssh:// url (default: the configured default, else local).")] = None,
    budget_ms: Annotated[Optional[float], Option(help="Latency budget to check (ms).")] = None,
    budget_mj: Annotated[Optional[float], Option(help="Energy budget to check (mJ).")] = None,
    max_size_mb: Annotated[Optional[float], Option(help="Size limit to check (MB).")] = None,
    max_accuracy_drop: Annotated[Optional[float], Option(help="Accuracy limit to check (points; needs "
                                                         "--data).")] = None,
    data: Annotated[Optional[str], Option("--data", help="Labelled data for the accuracy change.")] = None,
    threads: Annotated[int, Option(help="Interpreter threads on the device.")] = 1,
    input_size: Annotated[Optional[int], Option(help="Input size (zoo names).")] = None,
    bundle: Annotated[Optional[Path], Option(help="Predictor bundle (default models/current).")] = None,
    store: Annotated[Path, Option(help="Dataset store the measured rows are appended to.")] = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Compress with a given plan, measure it on the device, and show predicted against measured."""
    from advisor.api import Advisor
    from advisor.devices import default_device
    from measure.verify import verify_recommendation

    device = device or default_device()
    rec = Advisor.load(bundle).plan(model, technique, device, budget_ms=budget_ms, budget_mj=budget_mj,
                                    max_size_mb=max_size_mb, max_accuracy_drop=max_accuracy_drop, threads=threads,
                                    input_size=input_size)
    result = verify_recommendation(rec, model=model, device=device, data=data, store=store, threads=threads,
                                   input_size=input_size)
    if as_json:
        _emit({**rec.to_dict(), "verification": result})
        return
    echo(f"{result['technique']} on {rec.model} ({device}): predicted against measured")
    for line in rec.explanation:
        echo(f"  {line}")
    for line in result["lines"]:
        echo(f"  {line}")

from advisor.cli_predictor import register as _register_predictor_commands  # noqa: E402

_register_predictor_commands(app)

from advisor.cli_data import register as _register_data_commands  # noqa: E402

_register_data_commands(app)

from advisor.cli_devices import register as _register_device_commands  # noqa: E402

_register_device_commands(app)

from advisor.cli_calibrate import register as _register_calibrate_command  # noqa: E402

_register_calibrate_command(app)

from advisor.cli_models import register as _register_model_commands  # noqa: E402

_register_model_commands(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every user error is one line on stderr and exit code 2."""
    try:
        code = app.run(argv)
        if isinstance(code, int) and code:
            return _exit(code)
    except (AdvisorError, UsageError) as exc:  # UsageError: an unknown, missing or unconvertible option
        echo(f"error: {exc}", err=True)
        return _exit(2)
    except Exit as exc:
        return _exit(exc.code)
    except EOFError:
        echo("aborted", err=True)
        return _exit(130)
    except BrokenPipeError:  # the reader went away (`advisor ... | head`): stop quietly, exit code 1
        _quiet_stdout()
        return _exit(1)
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        return _exit(130)
    return _exit(0)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush meets no broken pipe."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (captured output)
        pass


def _exit(code: int) -> int:
    if __name__ == "__main__" or sys.argv and Path(sys.argv[0]).name in ("advisor", "cli.py"):
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
