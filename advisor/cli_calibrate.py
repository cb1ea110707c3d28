"""`advisor calibrate`: adapt the predictor to a new device from a few reference measurements.

`register(app)` adds the command. It measures (TensorFlow, on the measuring side) unless
`--refit`; what it saves is read on the answer path by `advisor.calibration` (numpy only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from advisor.cli_kit import App, Option, echo
from advisor.lookup import DEFAULT_STORE

JsonOpt = Annotated[bool, Option("--json", help="Print one JSON object for machines.")]


def calibrate(
    device: Annotated[str, Option("--device", "-d", help="The device to calibrate: 'local' or a "
                                  "device `advisor devices` lists (with --refit, also a device "
                                  "the training data names, such as local:<fingerprint>).")] = "local",
    threads: Annotated[int, Option(help="Interpreter threads to calibrate for.")] = 1,
    store: Annotated[Path, Option(help="Dataset store: the reference rows go here.")] = DEFAULT_STORE,
    bundle: Annotated[Optional[Path], Option("--bundle", help="Bundle to calibrate (default the "
                                             "current one).")] = None,
    refit: Annotated[bool, Option("--refit", help="Measure nothing: refit from the stored reference "
                                  "rows (after a retraining).")] = False,
    plan: Annotated[Optional[Path], Option("--plan", help="Another reference plan (default: the "
                                           "shipped 20-configuration set).")] = None,
    in_process: Annotated[bool, Option("--in-process", help="Measure all reference models in this "
                                       "process (faster; see `advisor campaign --in-process`).")] = False,
    quiet: Annotated[bool, Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure the reference set on a device and fit the correction that adapts the predictor to it."""
    from advisor.calibration import REFERENCE_PLAN, summary_lines
    from advisor.store import Store
    from measure.calibrate import calibrate as run

    result = run(device, store=Store(store), bundle_dir=bundle, threads=threads, plan_path=plan or REFERENCE_PLAN,
                 refit=refit, progress=not quiet and not as_json, in_process=in_process)
    if as_json:
        from advisor.cli import _emit

        _emit(result.to_dict())
        return
    for line in summary_lines(result.calibration):
        echo(line)
    echo(f"  saved               {result.path}")
    echo("  `advisor recommend` and `advisor predict` on this device now apply it")
    if result.probes:
        echo(f"  probes              the store holds {result.probes} of this device's own layer probes: "
             "`advisor train` learns its layer costs from them")
    else:
        echo(f"  deeper              measure the device's own layers and retrain: `advisor campaign "
             f"plans/adapt-device.toml --device {device} --store DIR`, then `advisor retrain --new DIR` "
             "(README: Adapting to a device)")


def register(app: App) -> None:
    """Add `calibrate` to the app."""
    app.command("calibrate")(calibrate)
