"""Summary of the kernel probes (`plans/kernels.toml`): how each technique changes one layer's time.

Reads the measured rows of a store (no measuring), keeps those of kernel-probe families timed on a
quiet machine (`advisor.predictor.busy_rows`) on one machine (`--fingerprint`, default: the one
with the most probe rows), and tabulates per probe family (and op, for the element-wise and
sequence probes of `plans/kernels-ops.toml`) and technique the quartiles of the latency ratio to
`none` (same interleaved rounds), plus the float baseline's throughput (GMAC/s) by output-channel
count. Writes bench/results/kernel_probes.md.

    python bench/kernel_probes.py [--store training_data] [--fingerprint ID]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import publish  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "training_data"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "kernel_probes.md"))
    ap.add_argument("--fingerprint", default=None, help="the machine (default: the one with the most probe rows)")
    args = ap.parse_args()

    import numpy as np

    from advisor.predictor import busy_rows, is_probe
    from advisor.store import Store
    from measure.sampling import parse_sampled_name, sample_arch

    store = Store(args.store)
    rows = store.read(status="ok", source="measured")
    rows = rows[is_probe(rows["family"].to_numpy())]
    if rows.empty:
        print(f"no kernel-probe rows in {args.store}: run `advisor campaign plans/kernels.toml --in-process`")
        return 2
    fingerprint = args.fingerprint or rows["fingerprint_id"].value_counts().index[0]
    rows = rows[rows["fingerprint_id"] == fingerprint]
    if rows.empty:
        print(f"no kernel-probe rows of machine {fingerprint} in {args.store}")
        return 2
    rows = rows.assign(op=[sample_arch(*parse_sampled_name(m)).op or "" for m in rows["model"]])
    busy = busy_rows(rows)
    quiet = rows[~busy]
    machine = f"{rows['cpu_model'].iloc[0]}, {rows['logical_cpus'].iloc[0]} logical CPUs, " \
              f"fingerprint {rows['fingerprint_id'].iloc[0]}"
    lines = ["# Kernel probes: each technique's latency ratio to `none`, one layer at a time",
             "", f"Machine: {machine}. Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
             f"{len(rows)} probe rows ({int(busy.sum())} timed on a busy machine and left out).", "",
             "| probe family | op | technique | probes | ratio p25 | median | p75 |",
             "|---|---|---|---:|---:|---:|---:|"]
    for (family, op, technique), group in quiet[quiet["technique"] != "none"].groupby(["family", "op", "technique"]):
        r = group["latency_ratio_to_baseline"].dropna().to_numpy()
        if len(r):
            q = np.percentile(r, [25, 50, 75])
            lines.append(f"| {family} | {op or '-'} | {technique} | {len(r)} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} |")
    lines += ["", "Float (`none`) convolution probes: throughput by output channels (GMAC/s, median).", "",
              "| output channels | probes | GMAC/s |", "|---|---:|---:|"]
    conv = quiet[(quiet["family"] == "sampled-conv_kernel") & (quiet["technique"] == "none")]
    by_channels: dict[str, list[float]] = {}
    for _, row in conv.iterrows():
        profile = store.get_profile(row["profile_digest"])
        layer = next((ly for ly in profile.layers if ly.type == "Conv2D"), None) if profile else None
        if layer is None or not row["latency_ms_median"]:
            continue
        c = int(layer.output_shape[-1])
        band = "≤16" if c <= 16 else "17–31" if c < 32 else "32–63" if c < 64 else "≥64"
        by_channels.setdefault(band, []).append(layer.macs / row["latency_ms_median"] / 1e6)
    for band in ("≤16", "17–31", "32–63", "≥64"):
        if band in by_channels:
            lines.append(f"| {band} | {len(by_channels[band])} | {np.median(by_channels[band]):.1f} |")
    publish("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
