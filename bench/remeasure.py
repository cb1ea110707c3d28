"""Benchmark: measure again, on another day, configurations the dataset already holds, and compare.

`bench/repeatability.py` shows that one configuration timed in separate processes within minutes
agrees. This asks the question that bounds what any predictor can score: does the dataset's row
for a configuration still hold on another day, on a machine with the same fingerprint (a cloud
machine of the same kind may be another host)? It runs a plan into a scratch store (the dataset
itself is only read), joins the new rows to the dataset's by configuration id, and reports how
many new latencies lie within 5% and 10% of the stored ones, for absolute latencies and for the
ratios to `none` that the runner times in the same interleaved rounds, with the median drift.

    python bench/remeasure.py --plan plans/sampled-ptq.toml --limit 128      # measures (~12 min here)
    python bench/remeasure.py --scratch /tmp/remeasure --no-measure          # compare what is there

Keep the machine otherwise idle while it measures, as for any campaign.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import publish  # noqa: E402


def _within(rel: np.ndarray, tol: float) -> float:
    return float(np.mean(np.abs(rel - 1.0) <= tol)) if rel.size else float("nan")


def _line(label: str, rel: np.ndarray) -> dict:
    rel = rel[np.isfinite(rel) & (rel > 0)]
    drift = float(np.median(rel)) if rel.size else float("nan")
    return {"what": label, "n": int(rel.size), "within_5pct": _within(rel, 0.05), "within_10pct": _within(rel, 0.10),
            "median_new_over_old": drift,
            "within_10pct_drift_removed": _within(rel / drift, 0.10) if rel.size else float("nan")}


def compare(new_rows, old_rows) -> dict:
    """Pair new and stored rows by configuration id and score their agreement (see the module docstring)."""
    new = new_rows[new_rows["status"] == "ok"]
    old = old_rows[old_rows["status"] == "ok"].drop_duplicates("config_id")
    j = new.merge(old, on="config_id", suffixes=("_new", "_old"))
    if len(j) == 0:
        raise SystemExit("no new row matches a stored configuration: wrong plan or store?")
    absolute = (j["latency_ms_median_new"] / j["latency_ms_median_old"]).to_numpy(dtype=float)
    compressed = (j["technique_new"] != "none").to_numpy()
    ratio = (j["latency_ratio_to_baseline_new"] / j["latency_ratio_to_baseline_old"]).to_numpy(dtype=float)
    lines = [_line("absolute latency, every row", absolute)]
    for tech in sorted(j["technique_new"].unique()):
        lines.append(_line(f"absolute latency, {tech}", absolute[(j["technique_new"] == tech).to_numpy()]))
    lines.append(_line("ratio to `none` (same interleaved rounds)", ratio[compressed]))
    families = []
    for fam in sorted(j["family_new"].astype(str).unique()):
        families.append(_line(fam, absolute[(j["family_new"].astype(str) == fam).to_numpy()]))
    fast = (j["latency_ms_median_old"] < 0.1).to_numpy()
    by_scale = [_line("under 0.1 ms", absolute[fast]), _line("0.1 ms or more", absolute[~fast])]
    return {
        "pairs": int(len(j)),
        "devices": sorted(set(j["device_new"].astype(str)) | set(j["device_old"].astype(str))),
        "stored_measured": sorted(set(j["measured_at_old"].astype(str).str[:10])),
        "new_measured": sorted(set(j["measured_at_new"].astype(str).str[:10])),
        "new_window": [str(t)[:16].replace("T", " ") for t in (j["measured_at_new"].astype(str).min(),
                                                                  j["measured_at_new"].astype(str).max())],
        "size_identical": float(np.mean(j["size_bytes_new"].to_numpy() == j["size_bytes_old"].to_numpy())),
        "lines": lines, "by_family": families, "by_scale": by_scale,
    }


def _table(rows: list[dict]) -> list[str]:
    out = ["| | n | within ±5% | within ±10% | median new/old | ±10% with the median drift removed |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['what']} | {r['n']} | {100 * r['within_5pct']:.1f}% | {100 * r['within_10pct']:.1f}% | "
                   f"{r['median_new_over_old']:.3f} | {100 * r['within_10pct_drift_removed']:.1f}% |")
    return out


def report(result: dict, plan: str) -> str:
    """The markdown report of `compare`'s result."""
    lines = [
        "# The same configurations measured again on another day",
        "",
        f"Plan `{plan}`; {result['pairs']} configurations measured again ({result['new_window'][0]} to "
        f"{result['new_window'][1]} UTC) and compared with the dataset's rows of "
        f"{', '.join(result['stored_measured'])}; device {', '.join(result['devices'])}. "
        "Command: `python bench/remeasure.py`. File sizes identical: "
        f"{100 * result['size_identical']:.0f}%.",
        "",
        *_table(result["lines"]),
        "",
        "By family (absolute latency):",
        "",
        *_table(result["by_family"]),
        "",
        "By the stored latency (absolute latency):",
        "",
        *_table(result["by_scale"]),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="plans/sampled-ptq.toml")
    ap.add_argument("--limit", type=int, default=128, help="configurations to measure again (the plan's first)")
    ap.add_argument("--store", default=str(ROOT / "training_data"), help="the dataset holding the stored rows")
    ap.add_argument("--scratch", default="/tmp/remeasure", help="store the new rows go to (not the dataset)")
    ap.add_argument("--no-measure", action="store_true", help="compare what the scratch store holds")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "remeasure.md"))
    args = ap.parse_args()
    if Path(args.scratch).resolve() == Path(args.store).resolve():
        raise SystemExit("--scratch must not be the dataset itself")
    if not args.no_measure:
        advisor = str(Path(sys.executable).parent / "advisor")
        subprocess.run([advisor, "campaign", args.plan, "--store", args.scratch, "--limit", str(args.limit),
                        "--in-process", "--quiet"], check=True, cwd=ROOT)
    from advisor.store import Store

    result = compare(Store(args.scratch).read(), Store(args.store).read())
    publish(report(result, args.plan), args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
