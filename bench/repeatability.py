"""Benchmark: does timing one configuration twice, in separate processes, agree?

Runs `advisor measure ... --json` N times as separate processes and compares the medians.
Each run meets the 5% interval rule on its own; what this shows is the drift between runs,
which is why comparisons are made within one interleaved run. Tolerance stated: 10%.

    python bench/repeatability.py [--model mobilenet_v2] [--input-size 96] [--technique none] [-n 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--input-size", default="96")
    ap.add_argument("--technique", default="ptq-int8")
    ap.add_argument("-n", type=int, default=3)
    args = ap.parse_args()
    advisor = str(Path(sys.executable).parent / "advisor")
    runs = []
    for i in range(args.n):
        proc = subprocess.run([advisor, "measure", "--model", args.model, "--input-size", args.input_size,
                               "--technique", args.technique, "--json", "--quiet"],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return 1
        out = json.loads(proc.stdout)
        runs.append({"median_ms": out["latency_ms"]["median"], "ci": out["latency_ms"]["ci95_halfwidth_rel"],
                     "rule_met": out["latency_ms"]["rule_met"], "ratio": out["latency_ratio_to_baseline"],
                     "baseline_ms": out["baseline"]["latency_ms"]["median"]})
        print(f"run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    meds = [r["median_ms"] for r in runs]
    ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
    spread = (max(meds) - min(meds)) / statistics.median(meds)
    ratio_spread = (max(ratios) - min(ratios)) / statistics.median(ratios) if ratios else float("nan")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}: {args.model}@{args.input_size} {args.technique}, {args.n} separate processes")
    print(f"  medians (ms): {', '.join(f'{m:.3f}' for m in meds)}; spread {spread * 100:.1f}% "
          f"({'within' if spread <= TOLERANCE else 'OUTSIDE'} the {TOLERANCE * 100:.0f}% tolerance)")
    print(f"  ratio to none from interleaved rounds: {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"spread {ratio_spread * 100:.1f}%")
    return 0 if spread <= TOLERANCE else 3


if __name__ == "__main__":
    sys.exit(main())
