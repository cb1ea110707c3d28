"""Benchmark: how well the predictor does on a device it was not trained on, three ways.

For a device in the store (default: this machine), a bundle is trained on every row *except*
that device's, plus (with --plan) that device's rows of a probe plan, then judged on the
device's whole-network rows (`bench/calibration.py`: before and after the 20-row calibration,
which is refitted for that bundle from the stored reference rows). Settings compared in the
README: no row of the device (the new-device case as it first arrives), the device's
`plans/adapt-device.toml` probes (about 10 minutes of measuring), all of its kernel probes.

Each setting trains a bundle (5-10 minutes on 2 cores). Nothing under models/ is touched:
bundles, calibrations and the filtered store live under --work.

    python bench/adapt_device.py --plan plans/adapt-device.toml --out bench/results/calibration-adapt
    python bench/adapt_device.py --plan none --out bench/results/calibration-newcpu
    python bench/adapt_device.py --plan all-probes --out bench/results/calibration-probes
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def filtered_store(source: Path, target: Path, device: str, keep_models: set[str] | None, probes: bool) -> int:
    """Copy the store without `device`'s rows, except those of `keep_models` (or, with `probes`,
    all of its kernel probes); returns how many of the device's rows were kept."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (target / "measurements").mkdir(parents=True)
    for name in ("devices", "profiles"):
        if (source / name).exists():
            os.symlink((source / name).resolve(), target / name)
    kept = 0
    for shard in sorted((source / "measurements").glob("*.parquet")):
        table = pq.read_table(shard)
        on_device = pc.equal(table["device"], device)
        if probes:
            allowed = pc.ends_with(table["family"], "_kernel")
        elif keep_models:
            allowed = pc.is_in(table["model"], value_set=pa.array(sorted(keep_models)))
        else:
            allowed = pa.array([False] * table.num_rows)
        keep = pc.or_(pc.invert(on_device), pc.and_(on_device, allowed))
        out = table.filter(keep)
        kept += int(pc.sum(pc.and_(on_device, allowed)).as_py() or 0)
        if out.num_rows:
            pq.write_table(out, target / "measurements" / shard.name)  # keeps the shard's schema metadata
    return kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "training_data"))
    ap.add_argument("--device", default=None, help="a device in the store (default: this machine, local:<id>)")
    ap.add_argument("--plan", default="none", help="a probe plan whose rows of the device stay in training, "
                    "'none', or 'all-probes'")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    ap.add_argument("--out", required=True, help="results path without extension (.md and .json)")
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint, fingerprint_id

    device = args.device or f"local:{fingerprint_id(collect_fingerprint())}"
    keep_models = None
    if args.plan not in ("none", "all-probes"):
        from measure.campaign import load_plan

        keep_models = {c.model for c in load_plan(args.plan).configs}
    work = Path(args.work or tempfile.mkdtemp(prefix="adapt-device-"))
    try:
        kept = filtered_store(Path(args.store), work / "store", device, keep_models, args.plan == "all-probes")
        print(f"{device}: {kept} of its rows kept for training ({args.plan})", flush=True)
        advisor = str(Path(sys.executable).parent / "advisor")
        # the bundle's own held-out evaluation is not what this judges: skipped (a third of the time)
        subprocess.run([advisor, "train", "--data", str(work / "store"), "--out", str(work / "bundle"),
                        "--evaluate", "none"], check=True)
        env = {**os.environ, "ADVISOR_CALIBRATIONS": str(work / "calibrations")}
        subprocess.run([advisor, "calibrate", "--device", "local" if args.device is None else device, "--refit",
                        "--bundle", str(work / "bundle"), "--store", args.store], check=True, env=env)
        calibration = next((work / "calibrations").glob("*-t1.json"))
        subprocess.run([sys.executable, str(ROOT / "bench" / "calibration.py"), "--store", args.store,
                        "--bundle", str(work / "bundle"), "--calibration", str(calibration), "--out", args.out],
                       check=True)
        note = (f"\nSetting: a bundle trained on every row of {Path(args.store).name} except {device}'s"
                + (f", plus its {kept} rows of {args.plan}" if keep_models else
                   f", plus its {kept} kernel-probe rows" if args.plan == "all-probes" else "")
                + f". Reproduce: `python bench/adapt_device.py --plan {args.plan} --out {args.out}`.\n")
        with open(args.out + ".md", "a") as handle:
            handle.write(note)
        print(note)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
