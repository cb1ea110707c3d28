"""Benchmark: how fast does the advisor answer?

  (a) the floor: `python -c pass`, N separate processes;
  (b) the cold command `advisor recommend --model resnet50 --budget-ms 50`, N separate processes
      (the venv's entry point, the default bundle models/current);
  (c) in-process throughput: the bundle loaded once, K candidate rows scored (several zoo
      profiles x every candidate spec, repeated), through `Advisor.score` (featurise + predict,
      one batch per profile as `recommend` does) and through one `bundle.predict` batch; "cold"
      is each network's first batch (its per-layer latency sums computed), "warm" the repeats
      (memoised per network, device and numeric steps: `advisor.layer_costs`);
  (d) `python -X importtime` of the cold command: the top-level imports by cumulative time.

Goals: the cold command at most 1.0 s median; at least 10,000 candidates scored per second.
Prints a markdown table and writes bench/results/answer_speed.md.

    python bench/answer_speed.py [-n 15] [-k 10000] [--bundle models/current]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_COLD_S = 1.0
GOAL_ROWS_PER_S = 10_000
COMMAND = ["recommend", "--model", "resnet50", "--budget-ms", "50"]
PROFILES = ("resnet50", "mobilenet_v2", "mobilenet_v3_small@96", "efficientnet_b0@128", "densenet121@96",
            "mobilenet@128")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def wall_times(argv: list[str], n: int, env: dict[str, str]) -> list[float]:
    """Wall time of `argv` as n separate processes; stops at the first failure."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        out.append(time.perf_counter() - start)
        if proc.returncode:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return out


def throughput(bundle: str | None, k: int) -> dict[str, float]:
    """Candidate rows scored per second, in-process, bundle loaded once."""
    import numpy as np

    from advisor.api import Advisor, profile_for
    from advisor.candidates import candidate_specs
    from advisor.features import device_features, feature_matrix
    from advisor.lookup import device_fingerprint

    t0 = time.perf_counter()
    adv = Advisor.load(bundle)
    load_s = time.perf_counter() - t0
    specs = list(candidate_specs())
    profiles = [profile_for(name) for name in PROFILES]
    fp, _ = device_fingerprint("local", adv.bundle.predictor)
    adv.score(profiles[0], specs, fp)  # warm caches (spec parsing) outside the timing

    # Cold: each network's first scoring in this process (its per-layer sums not yet memoised).
    start = time.perf_counter()
    for profile in profiles[1:]:
        adv.score(profile, specs, fp)
    cold_s = time.perf_counter() - start
    cold_rows = len(specs) * (len(profiles) - 1)

    rows, calls = 0, 0
    start = time.perf_counter()
    while rows < k:
        adv.score(profiles[calls % len(profiles)], specs, fp)
        rows += len(specs)
        calls += 1
    score_s = time.perf_counter() - start

    X = np.vstack([feature_matrix(p, specs, device_features(fp, 1)) for p in profiles])
    X = np.tile(X, (int(np.ceil(k / len(X))), 1))[: max(k, len(X))]
    start = time.perf_counter()
    adv.bundle.predict(X)
    batch_s = time.perf_counter() - start

    start = time.perf_counter()
    answers = 0
    while time.perf_counter() - start < 2.0 or answers < 5:
        adv.recommend(PROFILES[answers % len(PROFILES)], budget_ms=50)
        answers += 1
    rec_s = (time.perf_counter() - start) / answers
    return {"load_s": load_s, "specs": len(specs), "cold_rows": cold_rows, "cold_s": cold_s,
            "cold_rows_per_s": cold_rows / cold_s, "score_rows": rows, "score_calls": calls, "score_s": score_s,
            "score_rows_per_s": rows / score_s, "batch_rows": len(X), "batch_s": batch_s,
            "batch_rows_per_s": len(X) / batch_s, "recommend_s": rec_s, "recommend_calls": answers}


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_breakdown(argv: list[str], env: dict[str, str], top: int = 10) -> tuple[list[tuple[str, float, float]],
                                                                                      float]:
    """(top-level imports by cumulative ms: (name, self ms, cumulative ms), total ms) of `argv`."""
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"importtime run failed: {proc.stderr.strip()[-2000:]}")
    rows = []
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m and not m.group(3):  # no indent: imported by the program itself, not by another module
            rows.append((m.group(4), int(m.group(1)) / 1e3, int(m.group(2)) / 1e3))
    total = sum(r[2] for r in rows)
    return sorted(rows, key=lambda r: -r[2])[:top], total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=15, help="processes per cold measurement")
    ap.add_argument("-k", type=int, default=10_000, help="candidate rows to score in-process (at least)")
    ap.add_argument("--bundle", default=None, help="bundle folder (default models/current)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "answer_speed.md")
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint

    python = sys.executable
    entry = str(Path(python).parent / "advisor")
    if not Path(entry).exists():
        raise SystemExit(f"no advisor entry point beside {python}: install the package (make install)")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    command = [entry, *COMMAND] + (["--bundle", args.bundle] if args.bundle else [])
    fp = collect_fingerprint()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()

    wall_times(command, 1, env)  # one unrecorded run: bytecode compiled, files in the page cache
    floor = wall_times([python, "-c", "pass"], args.n, env)
    cold = wall_times(command, args.n, env)
    tp = throughput(args.bundle, args.k)
    imports, import_total = import_breakdown([python, "-X", "importtime", entry, *command[1:]], env)
    load_after = os.getloadavg()

    med_floor, med_cold = statistics.median(floor), statistics.median(cold)
    ok_cold = med_cold <= GOAL_COLD_S
    ok_rate = tp["score_rows_per_s"] >= GOAL_ROWS_PER_S
    lines = [
        "# Answer speed",
        "",
        f"Machine: {fp.get('cpu_model')}, {fp.get('logical_cpus')} logical CPUs ({fp.get('machine')}); "
        f"{when}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(other work shares the CPU: times are upper bounds).",
        f"Reproduce: `{Path(python).relative_to(ROOT) if Path(python).is_relative_to(ROOT) else python} "
        f"bench/answer_speed.py -n {args.n} -k {args.k}`",
        "",
        "| measurement | median | p90 | goal | |",
        "|---|---|---|---|---|",
        f"| (a) `python -c pass`, {args.n} processes | {med_floor * 1e3:.0f} ms | {_p90(floor) * 1e3:.0f} ms | | |",
        f"| (b) `advisor {' '.join(COMMAND)}`, {args.n} processes | {med_cold * 1e3:.0f} ms | "
        f"{_p90(cold) * 1e3:.0f} ms | ≤ {GOAL_COLD_S * 1e3:.0f} ms | {'met' if ok_cold else 'MISSED'} |",
        f"| (b) − (a): the advisor's own cost | {(med_cold - med_floor) * 1e3:.0f} ms | | | |",
        f"| (c) `Advisor.score`, cold: each of {len(PROFILES) - 1} networks' first batch of {tp['specs']} "
        f"(per-layer sums computed) | {tp['cold_rows_per_s']:,.0f} rows/s | | ≥ {GOAL_ROWS_PER_S:,} rows/s | "
        f"{'met' if tp['cold_rows_per_s'] >= GOAL_ROWS_PER_S else 'MISSED'} |",
        f"| (c) `Advisor.score`, warm: {tp['score_rows']:,} rows in {tp['score_calls']} batches of {tp['specs']} "
        f"(networks scored before) | {tp['score_rows_per_s']:,.0f} rows/s | | ≥ {GOAL_ROWS_PER_S:,} rows/s | "
        f"{'met' if ok_rate else 'MISSED'} |",
        f"| (c) `bundle.predict`, one batch of {tp['batch_rows']:,} rows | {tp['batch_rows_per_s']:,.0f} rows/s "
        "| | | |",
        f"| (c) in-process `Advisor.recommend` (all {tp['specs']} candidates, explained) | "
        f"{tp['recommend_s'] * 1e3:.1f} ms each | | | |",
        f"| bundle load (`Advisor.load`) | {tp['load_s'] * 1e3:.0f} ms | | | |",
        "",
        "A bundle's forests load from their compiled copies (`advisor.trees.compiled`: .npz arrays cached "
        "under $ADVISOR_CACHE/forests by the hash of each verified JSON); only the first process after a new "
        "bundle parses the JSON (about 100 ms more here).",
        "",
        f"(d) `python -X importtime` of (b): top-level imports by cumulative time "
        f"(all top-level imports together: {import_total:.0f} ms)",
        "",
        "| import | self ms | cumulative ms |",
        "|---|---|---|",
        *(f"| `{name}` | {self_ms:.1f} | {cum_ms:.1f} |" for name, self_ms, cum_ms in imports),
        "",
        "Raw wall times (s):",
        "",
        f"- floor: {', '.join(f'{t:.3f}' for t in floor)}",
        f"- cold: {', '.join(f'{t:.3f}' for t in cold)}",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0 if ok_cold and ok_rate else 3


if __name__ == "__main__":
    sys.exit(main())
