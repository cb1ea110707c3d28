"""Benchmark: `advisor calibrate` on every measured machine, each left out of training in turn.

`bench/calibration.py` judges one calibration against the bundle it was fitted to, and the
honest setting (a machine the bundle never saw) needs a bundle trained without that machine.
This trains one in memory for each machine with stored calibration reference rows: the latency
side of the predictor (its bands calibrated as `advisor train` does) on every row but that
machine's (its probes too), fits the machine's calibration from its 20 reference rows as
`advisor calibrate` does, and scores every other network latency the machine has (not its
reference rows, not probes, not rows timed on a busy machine), before and after.

It also scores the latency band each way a calibrated device could get it, side by side:

  family band     as shipped since 2026-12-07 (`Calibration.predict`): the bundle's family-level
                  band (the one a machine it was trained on gets), moved with the correction and
                  widened, each side, to the reference rows' leave-one-network-out residuals
  new-device band as shipped before: the same from the bundle's band for a machine it never saw
                  (the wider of its family-level and new-device shifts, `Bundle.predict`)
  mean width      each side's distance from the median the mean of the family-level band's and
                  the leave-one-out residuals'

    python bench/calibration_lomo.py [--data training_data] [--out bench/results/calibration-lomo]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._report import publish  # noqa: E402
from bench._rows import ok_rows  # noqa: E402

#: The band rules compared (module docstring).
BANDS = ("family band", "new-device band", "mean width")


def _scores(y: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """`advisor evaluate`'s latency metrics, and the band's median p90/p10."""
    from advisor.evaluate import _ratio_metrics

    return {**_ratio_metrics(y, q), "band_width": float(np.median(q[:, 2] / q[:, 0]))}


def _bands(model, cal, X: np.ndarray, unknown: np.ndarray) -> dict[str, np.ndarray]:
    """The calibrated latency quantiles under each rule of `BANDS` (`unknown`: the model's latency
    quantiles for a machine it never saw, `model.predict(X)`)."""
    prior = model.priors_["latency"]
    family = model.predict(X, calibrated=True)["latency"]
    q = np.log(family)
    mid = q[:, 1] + cal.correction(X, prior)
    lo, hi = cal.band
    mean = np.column_stack([mid + np.minimum((q[:, 0] - q[:, 1] + lo) / 2, 0), mid,
                            mid + np.maximum((q[:, 2] - q[:, 1] + hi) / 2, 0)])
    return {"family band": cal.apply(X, {"latency": family}, prior)["latency"],
            "new-device band": cal.apply(X, {"latency": unknown}, prior)["latency"], "mean width": np.exp(mean)}


def train_without(rows, profiles, fingerprints, device: str):
    """The latency side of the predictor, bands calibrated, trained on every row but `device`'s."""
    from advisor import predictor as P

    model = P.Predictor(n_jobs=2)
    model._components = lambda: P.LATENCY_MODES["composed"]  # the latency side only
    return model.fit(rows[(rows["device"] != device).to_numpy()].reset_index(drop=True), profiles, fingerprints)


def left_out(rows, profiles, fingerprints, device: str, threads: int, model) -> dict | None:
    """Calibrate `device` at `threads` for `model` (`train_without(device)`), score its held-out
    network latencies."""
    from advisor import predictor as P
    from advisor.calibration import MIN_ROWS, REFERENCE_PLAN, fit_calibration
    from advisor.features import device_features, feature_matrix
    from measure.calibrate import reference_plan, reference_rows

    reference = reference_rows(rows, reference_plan(threads, REFERENCE_PLAN), device)
    mine = (rows["device"] == device).to_numpy()
    held = rows[mine & (rows["threads"] == threads).to_numpy()]
    held = held[~held["config_id"].isin(set(reference["config_id"])) & ~P.is_probe(held["family"].to_numpy())]
    held = held[~P.busy_rows(held) & np.isfinite(held["latency_ms_median"].to_numpy(dtype=float))]
    if len(reference) < MIN_ROWS or held.empty:
        return None
    fp = fingerprints[device.split(":", 1)[1]]
    feats = device_features(fp, threads)

    def features(frame) -> np.ndarray:
        return np.vstack([feature_matrix(profiles[str(r["profile_digest"])], [str(r["technique"])], feats)
                          for r in frame.to_dict("records")])

    Xr = features(reference)
    cal = fit_calibration(Xr, reference["latency_ms_median"].to_numpy(dtype=float), model.predict(Xr),
                          model.priors_["latency"], device=device, fingerprint=fp, threads=threads,
                          bundle_version="left-out", reference=list(reference["config_id"].astype(str)),
                          networks=list(reference["model"].astype(str)))
    X, y = features(held), held["latency_ms_median"].to_numpy(dtype=float)
    unknown = model.predict(X)["latency"]
    bands = _bands(model, cal, X, unknown)
    return {"device": device, "threads": threads, "cpu_model": fp.get("cpu_model"), "reference_rows": len(reference),
            "held_out_rows": int(len(y)), "training_rows": int((~mine).sum()), "lambda": cal.lam,
            "no_correction": bool(cal.metrics.get("no_correction")), "loo_band": list(cal.band),
            "before": _scores(y, unknown),
            "after": {name: _scores(y, q) for name, q in bands.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "training_data"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "calibration-lomo"))
    args = ap.parse_args()

    from advisor.calibration import MIN_ROWS, REFERENCE_PLAN
    from advisor.fingerprint import collect_fingerprint, fingerprint_id
    from advisor.progress import stage
    from measure.calibrate import reference_plan, reference_rows

    rows, profiles, fingerprints = ok_rows(args.data)
    start = dt.datetime.now(dt.timezone.utc)
    results, models = [], {}
    timed = rows[np.isfinite(rows["latency_ms_median"].to_numpy(dtype=float))]
    for device, threads in sorted({(str(d), int(t)) for d, t in zip(timed["device"], timed["threads"])}):
        if not device.startswith("local:") or device.split(":", 1)[1] not in fingerprints:
            continue
        if len(reference_rows(rows, reference_plan(threads, REFERENCE_PLAN), device)) < MIN_ROWS:
            continue  # never calibrated at this thread count
        if device not in models:
            stage(f"training without {device}")
            models[device] = train_without(rows, profiles, fingerprints, device)
        got = left_out(rows, profiles, fingerprints, device, threads, models[device])
        if got is not None:
            results.append(got)
    fp = collect_fingerprint()
    end = dt.datetime.now(dt.timezone.utc)

    def pct(v: float) -> str:
        return f"{100 * v:.1f}%"

    lines = ["# `advisor calibrate` on machines the bundle never saw (`bench/calibration_lomo.py`)", "",
             f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC, computed on {fp.get('cpu_model')} ({fingerprint_id(fp)}); "
             f"{len(rows):,} stored rows (status ok). For each machine: the latency side of the predictor trained "
             "on every other machine's rows, the machine's calibration fitted from its reference rows, and its "
             "other network latencies scored (the median within ±10%, p10–p90 coverage, the band's median "
             "p90/p10).", "",
             "| machine | threads | held out | ±10% before | ±10% after | ±25% after | MAPE after | "
             + " | ".join(f"coverage, {b} (p90/p10)" for b in BANDS) + " |",
             "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(BANDS)]
    for r in results:
        a = r["after"][BANDS[0]]
        lines.append(f"| {r['device']} ({r['cpu_model']}) | {r['threads']} | {r['held_out_rows']:,} | "
                     f"{pct(r['before']['within_10pct'])} | **{pct(a['within_10pct'])}** | {pct(a['within_25pct'])} | "
                     f"{pct(a['mape'])} | " + " | ".join(
                         f"{pct(r['after'][b]['interval_coverage_80'])} (×{r['after'][b]['band_width']:.2f})"
                         for b in BANDS) + " |")
    if results:
        n = np.array([r["held_out_rows"] for r in results], dtype=float)

        def pooled(key: str, band: str = BANDS[0]) -> float:
            return float(np.sum(n * np.array([r["after"][band][key] for r in results])) / n.sum())

        lines.append(f"| every machine, rows pooled | | {int(n.sum()):,} | "
                     f"{pct(float(np.sum(n * np.array([r['before']['within_10pct'] for r in results])) / n.sum()))} | "
                     f"**{pct(pooled('within_10pct'))}** | {pct(pooled('within_25pct'))} | {pct(pooled('mape'))} | "
                     + " | ".join(pct(pooled("interval_coverage_80", b)) for b in BANDS) + " |")
    lines += ["", "Reproduce: `python bench/calibration_lomo.py`.", ""]
    out = Path(args.out)
    publish("\n".join(lines), out.with_suffix(".md"))
    out.with_suffix(".json").write_text(json.dumps({"started": start.isoformat(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
