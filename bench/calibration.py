"""Calibration of a new device, judged on rows it never saw: before and after, side by side.

Reads a device's measured rows from a store (no measuring), leaves out the calibration's own
reference rows, and scores the bundle's latency predictions on the rest twice: as the bundle
gives them, and corrected by the device's calibration. The honest setting is a device the bundle
was not trained on (the script says whether it was). Writes bench/results/calibration.{md,json}.

    advisor campaign plans/device-check.toml --store training_data --in-process   # the held-out rows
    advisor calibrate --device local                                              # the calibration
    python bench/calibration.py [--store training_data] [--calibration FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _scores(y, q):
    import numpy as np

    err = np.abs(q[:, 1] / y - 1.0)
    return {"n": int(len(y)), "within_10pct": float(np.mean(err <= 0.10)),
            "within_25pct": float(np.mean(err <= 0.25)), "mape": float(np.mean(err)),
            "median_ape": float(np.median(err)),
            "interval_coverage_80": float(np.mean((y >= q[:, 0]) & (y <= q[:, 2])))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "training_data"))
    ap.add_argument("--calibration", help="calibration file (default: this machine's, 1 thread)")
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "calibration"))
    args = ap.parse_args()

    import numpy as np

    from advisor.bundle import DEFAULT_BUNDLE, load
    from advisor.calibration import calibration_path, load_calibration
    from advisor.features import device_features, feature_matrix
    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from advisor.predictor import busy_rows, is_probe
    from advisor.store import Store

    bundle = load(args.bundle or DEFAULT_BUNDLE)
    path = Path(args.calibration) if args.calibration else calibration_path(fingerprint_id(collect_fingerprint()), 1)
    if not path.exists():
        print(f"no calibration at {path}: run `advisor calibrate --device local` first")
        return 2
    cal = load_calibration(path)
    if cal.bundle_version != bundle.version:
        print(f"the calibration is for bundle {cal.bundle_version}, the bundle is {bundle.version}: refit it")
        return 2
    store = Store(args.store)
    rows = store.read(status="ok", source="measured")
    rows = rows[(rows["device"] == cal.device) & (rows["threads"] == cal.threads)]
    rows = rows[~rows["config_id"].isin(set(cal.reference)) & ~is_probe(rows["family"].to_numpy())]
    busy = busy_rows(rows)
    rows = rows[~busy & np.isfinite(rows["latency_ms_median"].to_numpy(dtype=float))].reset_index(drop=True)
    if rows.empty:
        print(f"no held-out rows of {cal.device} in {args.store}: run plans/device-check.toml on it")
        return 2
    trained_on = (bundle.card.get("training_data") or {}).get("by_device", {}).get(cal.device, 0)
    feats = device_features(cal.fingerprint, cal.threads)
    X = np.vstack([feature_matrix(store.get_profile(str(r["profile_digest"])), [str(r["technique"])], feats)
                   for r in rows.to_dict("records")])
    y = rows["latency_ms_median"].to_numpy(dtype=float)
    before = bundle.predict(X)["latency"]
    after = cal.predict(bundle, X)["latency"]
    # FLOPs-proportional guess from the same 20 reference rows (what one would do by hand).
    ref = store.read(status="ok")
    ref = ref[ref["config_id"].isin(set(cal.reference)) & (ref["technique"] == "none")]
    per_mac = float(np.median(ref["latency_ms_median"].to_numpy(float) / ref["macs"].to_numpy(float)))
    flops = np.repeat((rows["macs"].to_numpy(float) * per_mac)[:, None], 3, axis=1)
    groups = {"all": np.ones(len(rows), bool), "uncompressed": rows["technique"].to_numpy() == "none",
              "compressed": rows["technique"].to_numpy() != "none"}
    for fam in sorted(rows["family"].unique()):
        groups[f"family {fam}"] = rows["family"].to_numpy() == fam
    table = {name: {"before": _scores(y[m], before[m]), "after": _scores(y[m], after[m]),
                    "flops_proxy": _scores(y[m], flops[m])} for name, m in groups.items() if m.sum()}
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cal.fingerprint.get('cpu_model', '?')}, {cal.fingerprint.get('logical_cpus', '?')} logical CPUs"
    result = {"when": when, "device": cal.device, "machine": machine, "threads": cal.threads,
              "bundle": bundle.version, "bundle_rows_on_device": int(trained_on),
              "reference_rows": len(cal.reference), "held_out_rows": int(len(rows)),
              "busy_rows_left_out": int(busy.sum()),
              "calibration_loo": cal.metrics.get("after"), "table": table, "python": platform.python_version()}
    lines = [f"Calibration of {cal.device} ({machine}, {cal.threads} thread(s)), {when}; bundle {bundle.version} "
             f"({trained_on} training rows on this device); {len(cal.reference)} reference rows; "
             f"{len(rows)} held-out rows ({int(busy.sum())} timed on a busy machine left out).",
             "Reproduce: `python bench/calibration.py`.", "",
             "| rows | n | ±10% before | ±10% after | ±25% before | ±25% after | MAPE before | MAPE after "
             "| p10–p90 coverage before | after | FLOPs-proportional ±10% |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in table.items():
        b, a, f = t["before"], t["after"], t["flops_proxy"]
        lines.append(f"| {name} | {a['n']} | {b['within_10pct']:.1%} | **{a['within_10pct']:.1%}** | "
                     f"{b['within_25pct']:.1%} | {a['within_25pct']:.1%} | {b['mape']:.1%} | {a['mape']:.1%} | "
                     f"{b['interval_coverage_80']:.1%} | {a['interval_coverage_80']:.1%} | {f['within_10pct']:.1%} |")
    text = "\n".join(lines) + "\n"
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
