"""Benchmark: each technique against `none` on a handful of zoo networks, on this machine.

Every configuration is measured for real (compress, fine-tune on random data where the
technique needs it, convert, time interleaved with its baseline in the same rounds). Prints a
markdown table of latency, size and gzip-size ratios to `none`, and writes it with the raw
rows' summary under bench/results/. Not a test: it takes tens of minutes on 2 cores.

    python bench/techniques.py [--models mobilenet_v2@96,resnet50@96] [--threads 1] [--save]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = "mobilenet_v2@96,mobilenet_v3_small@96,resnet50@96,efficientnet_b0@96,lstm_text@64"
DEFAULT_TECHNIQUES = "ptq-dynamic,ptq-float16,ptq-int8,qat-int8,prune:0.8,cluster:16,prune:0.8+ptq-int8"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--techniques", default=DEFAULT_TECHNIQUES)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-cap", type=float, default=20.0)
    ap.add_argument("--save", action="store_true", help="append every row to training_data/")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "techniques"))
    ap.add_argument("--from-store", metavar="DIR", help="tabulate rows already measured (e.g. by "
                    "`advisor campaign plans/zoo-quick.toml`) instead of measuring again")
    args = ap.parse_args()
    if args.from_store:
        return tabulate_store(Path(args.from_store), args)

    from advisor import fingerprint
    from advisor.errors import AdvisorError
    from advisor.store import Store
    from measure.devices import get_device
    from measure.runner import MeasureSettings, measure

    device = get_device("local")
    fp = fingerprint.collect_fingerprint()
    store = Store(ROOT / "training_data") if args.save else None
    results = []
    started = time.monotonic()
    for item in args.models.split(","):
        name, _, size = item.partition("@")
        settings = MeasureSettings(input_size=int(size) if size else None, threads=args.threads,
                                   time_cap_s=args.time_cap)
        for spec in args.techniques.split(","):
            t0 = time.monotonic()
            try:
                m = measure(name, spec, device, settings)
            except AdvisorError as exc:
                print(f"{item:<22} {spec:<24} FAILED: {exc}", file=sys.stderr, flush=True)
                results.append({"model": item, "technique": spec, "status": "failed", "error": str(exc)})
                continue
            if store is not None:
                m.save(store)
            r, b = m.row, m.baseline
            res = {"model": item, "technique": spec, "status": "ok",
                   "latency_ms": r["latency_ms_median"], "baseline_ms": b["latency_ms_median"],
                   "latency_ratio": r["latency_ratio_to_baseline"],
                   "size_ratio": r["size_bytes"] / b["size_bytes"],
                   "gzip_ratio": r["size_gzip_bytes"] / b["size_gzip_bytes"],
                   "gzip_vs_none_gzip": r["size_gzip_bytes"] / b["size_gzip_bytes"],
                   "size_bytes": r["size_bytes"], "baseline_size_bytes": b["size_bytes"],
                   "peak_mib": r["peak_memory_bytes"] / 2**20, "baseline_peak_mib": b["peak_memory_bytes"] / 2**20,
                   "rule_met": bool(r["latency_rule_met"] and b["latency_rule_met"]),
                   "round_spread": r["latency_round_spread_rel"], "seconds": time.monotonic() - t0}
            results.append(res)
            print(f"{item:<22} {spec:<24} ×{res['latency_ratio']:.2f} latency  ×{res['size_ratio']:.2f} size  "
                  f"×{res['gzip_ratio']:.2f} gzip  ({res['seconds']:.0f} s)", file=sys.stderr, flush=True)

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{fp['cpu_model']}, {fp['logical_cpus']} logical CPUs, {args.threads} interpreter thread(s)"
    header = (f"Measured {when} on {machine} (fingerprint {fingerprint.fingerprint_id(fp)}); "
              f"random weights, fine-tuning on random data; ratios to `none` from the same interleaved rounds. "
              f"Total {time.monotonic() - started:.0f} s.")
    return write_table(results, header, Path(args.out), {"when": when, "machine": machine, "fingerprint": fp})


def tabulate_store(store_dir: Path, args) -> int:
    """The same table from stored rows: each compressed row against its own baseline row."""
    from advisor.store import Store

    df = Store(store_dir).read(status="ok", source="measured")
    if df.empty:
        print(f"no measured rows in {store_dir}", file=sys.stderr)
        return 2
    by_id = df.set_index("config_id")
    wanted = [m.replace("@", "@") for m in args.models.split(",")]
    techniques = args.techniques.split(",")
    results = []
    for item in wanted:
        name, _, size = item.partition("@")
        rows = df[(df.model.str.split("@").str[0] == name) & (df.input_size == int(size))] if size else \
            df[df.model == name]
        for spec in techniques:
            hit = rows[rows.technique == spec]
            if hit.empty:
                continue
            r = hit.iloc[0]
            b = by_id.loc[r.baseline_config_id]
            results.append({"model": item, "technique": spec, "status": "ok",
                            "latency_ms": r.latency_ms_median, "baseline_ms": b.latency_ms_median,
                            "latency_ratio": r.latency_ratio_to_baseline,
                            "size_ratio": r.size_bytes / b.size_bytes,
                            "gzip_ratio": r.size_gzip_bytes / b.size_gzip_bytes,
                            "peak_mib": r.peak_memory_bytes / 2**20, "baseline_peak_mib": b.peak_memory_bytes / 2**20,
                            "rule_met": bool(r.latency_rule_met and b.latency_rule_met),
                            "measured_at": r.measured_at})
    first = df.iloc[0]
    first_at, last_at = (x[:16].replace("T", " ") for x in (min(r["measured_at"] for r in results),
                                                            max(r["measured_at"] for r in results)))
    when = f"{first_at} to {last_at} UTC"
    machine = f"{first.cpu_model}, {first.logical_cpus} logical CPUs, {int(first.threads)} interpreter thread(s)"
    header = (f"Measured {when} on {machine} (fingerprint {first.fingerprint_id}); "
              "random weights, fine-tuning on random data; ratios to `none` from the same interleaved rounds "
              f"(rows from `{store_dir}`).")
    return write_table(results, header, Path(args.out), {"when": when, "machine": machine})


def write_table(results: list[dict], header: str, out: Path, meta: dict) -> int:
    lines = [header, "",
             "| model | technique | latency ms (none) | latency × | size × | gzip × | peak MiB (none) | CI rule |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['technique']} | failed: {r['error'][:80]} | | | | | |")
            continue
        slow = " **slower**" if r["latency_ratio"] > 1.05 else ""
        lines.append(f"| {r['model']} | {r['technique']} | {r['latency_ms']:.2f} ({r['baseline_ms']:.2f}) | "
                     f"{r['latency_ratio']:.2f}{slow} | {r['size_ratio']:.2f} | {r['gzip_ratio']:.2f} | "
                     f"{r['peak_mib']:.0f} ({r['baseline_peak_mib']:.0f}) | {'met' if r['rule_met'] else 'not met'} |")
    table = "\n".join(lines)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    out.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
