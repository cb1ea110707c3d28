"""Benchmark: the latency model alone, held out by family, stage by stage, in minutes.

`advisor evaluate` refits every component, and the calibration's refits with them, in each fold
(half an hour here). The median latency depends on the latency components only: this fits just
those (the linear kernel-sum prior, the per-layer cost and speed-up trees, the baseline and ratio
boosters) in the same family folds as `advisor evaluate` (`evaluate._folds`, five folds, the
given seed) and scores the median at each stage, so a change to the latency side is judged on the
evaluation's own held-out rows at a tenth of the cost:

  linear      the linear kernel-sum prior of the baseline (times the per-group ratio prior)
  layers      the per-layer sum (`layer_costs`: cost trees, and speed-up trees for the ratio)
  final       with the boosters on top: what `advisor evaluate` scores

and splits each compressed row's final error into its baseline's and its ratio's (the row's
network held out with it, so its baseline prediction is as blind as its own).

    python bench/latency_replay.py [--seeds 0,1,2] [--params JSON] [--layers JSON] [--speedups JSON]
        [--data training_data] [--out bench/results/latency_replay.md] [--rows rows.csv]

`--layers` and `--speedups` change the per-layer trees' `layer_costs.FitSettings` for the run
(all of them, or the speed-up trees' only), e.g. `--layers '{"max_depth": 9}'`.
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

#: What one held-out latency row records.
COLUMNS = ("config_id", "baseline_config_id", "family", "device", "plan", "technique", "fold", "measured",
           "measured_ratio", "linear", "layers", "final", "base_final", "ratio_final")


def replay(rows, profiles, fingerprints, seed: int, params: dict | None = None) -> list[tuple]:
    """One tuple (`COLUMNS`) per held-out network latency of the family folds of `seed`."""
    from advisor import features as F
    from advisor import layer_costs
    from advisor import predictor as P
    from advisor.evaluate import _folds, _probes, plan_kinds
    from advisor.trees import Forest

    fold, _ = _folds(rows, "family", 5, seed)
    probe = _probes(rows)
    data = P.prepare(rows, profiles, fingerprints, F.float_files(rows))
    ids, techniques = rows["config_id"].to_numpy(), rows["technique"].astype(str).to_numpy()
    base_ids = rows["baseline_config_id"].to_numpy()
    out = []
    for k in range(int(fold.max()) + 1):
        held = (fold == k) & ~probe
        train, test = data.take(fold != k), data.take(held)
        model = P.Predictor(**(params or {}))
        model._components = lambda: P.LATENCY_MODES["composed"]  # the latency side only
        core = model._fit_core(train)
        priors = core["priors"]
        forests = {n: Forest.from_json(r) for n, r in core["boosters"].items()}
        sub = P._Model(priors, forests, {}, "composed", core["energy_machines"], frozenset())
        X = test.X
        Xb = F.as_baseline(X)
        base = F.is_baseline(X)
        linear = priors["latency"](Xb) * np.where(base, 1.0, priors["latency_ratio"](X, priors["latency"]))
        layer_base = layer_costs.base_latency(priors, Xb)
        layers = layer_base * np.where(base, 1.0, layer_costs.latency_ratio(priors, X))
        raw = sub.raw(X)["latency"][:, 1]
        qb = sub._q("latency_base", Xb)
        base_final = layer_base * np.exp(qb[:, 1])
        final = np.exp(raw)
        kinds = plan_kinds(X)
        for i in np.flatnonzero(test.measured & P._positive(test.latency)):
            out.append((ids[held][i], base_ids[held][i], test.family[i], test.device[i], kinds[i],
                        techniques[held][i], k, test.latency[i], test.ratio[i], linear[i], layers[i], final[i],
                        base_final[i], final[i] / base_final[i]))
    return out


def _within(pred: np.ndarray, truth: np.ndarray, tol: float = 0.10) -> float:
    ok = np.isfinite(pred) & np.isfinite(truth) & (truth > 0)
    return float(np.mean(np.abs(pred[ok] / truth[ok] - 1.0) <= tol)) if ok.any() else float("nan")


def summary(got: list[tuple]) -> list[str]:
    """Markdown lines: each stage's share within ±10% (and ±25%), overall, by machine and by
    technique, and the baseline/ratio split of the compressed rows."""
    import pandas as pd

    d = pd.DataFrame(got, columns=COLUMNS)
    lines = ["| rows | n | linear ±10% | layers ±10% | final ±10% | final ±25% | final MAPE |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def line(name: str, s: pd.DataFrame) -> str:
        t = s.measured.to_numpy()
        mape = float(np.mean(np.abs(s.final.to_numpy() / t - 1.0))) * 100
        return (f"| {name} | {len(s):,} | {100 * _within(s.linear.to_numpy(), t):.1f}% | "
                f"{100 * _within(s.layers.to_numpy(), t):.1f}% | **{100 * _within(s.final.to_numpy(), t):.1f}%** | "
                f"{100 * _within(s.final.to_numpy(), t, 0.25):.1f}% | {mape:.1f}% |")

    lines.append(line("every network latency", d))
    for device, s in d.groupby("device"):
        lines.append(line(f"{device}", s))
    for technique, s in d.groupby("technique"):
        if len(s) >= 100:
            lines.append(line(f"`{technique}`", s))
    # A compressed row against its own network's held-out baseline prediction.
    b = d[d.technique == "none"].set_index("config_id")
    c = d[d.technique != "none"].join(b[["measured", "final"]].rename(columns={"measured": "bt", "final": "bp"}),
                                      on="baseline_config_id")
    c = c[c.bt.notna() & np.isfinite(c.measured_ratio)]
    if len(c):
        base_err = c.bp.to_numpy() / c.bt.to_numpy()
        ratio_err = (c.final.to_numpy() / c.bp.to_numpy()) / c.measured_ratio.to_numpy()
        lines += ["", f"Compressed rows whose baseline was timed and held out with them ({len(c):,}): the row "
                  f"within ±10% {100 * _within(c.final.to_numpy(), c.measured.to_numpy()):.1f}%, its baseline's "
                  f"prediction {100 * np.mean(np.abs(base_err - 1) <= 0.1):.1f}%, its ratio to it "
                  f"{100 * np.mean(np.abs(ratio_err - 1) <= 0.1):.1f}%."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "training_data"))
    ap.add_argument("--seeds", default="0", help="fold seeds, comma-separated (0: advisor evaluate's); the "
                    "first is broken down, the others say how much of a difference is the folds' luck")
    ap.add_argument("--params", default="{}", help="Predictor parameters as JSON, e.g. '{\"n_estimators\": 600}'")
    ap.add_argument("--layers", default="{}", help="per-layer cost trees' settings to change "
                    "(`layer_costs.FitSettings` fields as JSON, e.g. '{\"max_depth\": 9}')")
    ap.add_argument("--speedups", default="{}", help="the same for the speed-up trees, over `speedup_settings`")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latency_replay.md"))
    ap.add_argument("--rows", default=None, help="also write every held-out latency of the first seed to this CSV")
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint, fingerprint_id

    rows, profiles, fingerprints = ok_rows(args.data)
    params = json.loads(args.params)
    layers, speedups = json.loads(args.layers), json.loads(args.speedups)
    _override_settings(layers, speedups)
    seeds = [int(s) for s in args.seeds.split(",")]
    start = dt.datetime.now(dt.timezone.utc)
    runs = [replay(rows, profiles, fingerprints, seed, params) for seed in seeds]
    fp = collect_fingerprint()
    shown = {**params, **({"layers": layers} if layers else {}), **({"speedups": speedups} if speedups else {})}
    publish("\n".join(report(runs, seeds, shown, len(rows), str(args.data), start, fp, fingerprint_id(fp))), args.out)
    if args.rows:
        import pandas as pd
        pd.DataFrame(runs[0], columns=COLUMNS).to_csv(args.rows, index=False)


def _override_settings(layers: dict, speedups: dict) -> None:
    """Change the per-layer trees' `FitSettings` for this process: `layers` on every fit (the
    Predictor builds its settings from `FitSettings`), `speedups` on the speed-up trees' only."""
    from dataclasses import replace

    from advisor import layer_costs

    if layers:
        base = layer_costs.FitSettings
        layer_costs.FitSettings = lambda **kw: replace(base(**kw), **layers)
    if speedups:
        shipped = layer_costs.speedup_settings
        layer_costs.speedup_settings = lambda settings: replace(shipped(settings), **speedups)


def report(runs: list[list[tuple]], seeds: list[int], params: dict, n_rows: int, data: str, start: dt.datetime,
           fp: dict, fp_id: str) -> list[str]:
    """The markdown report: the first seed's breakdown, then one line per other seed."""
    lines = ["# The latency model held out by family, stage by stage (`bench/latency_replay.py`)", "",
             f"{start:%Y-%m-%d %H:%M} UTC, {fp.get('cpu_model')} ({fp_id}, {fp.get('logical_cpus')} logical CPUs); "
             f"{n_rows:,} stored rows (status ok) from {data}; Predictor parameters {params or 'as shipped'}. The "
             "median prediction against the measured latency.", "", f"Fold seed {seeds[0]}:", "", *summary(runs[0])]
    if len(seeds) > 1:
        lines += ["", "Every network latency, by fold seed:", "", "| fold seed | n | linear ±10% | layers ±10% | "
                  "final ±10% | final ±25% | final MAPE |", "|---|---:|---:|---:|---:|---:|---:|"]
        for seed, got in zip(seeds, runs):
            lines.append(summary(got)[2].replace("| every network latency |", f"| {seed} |"))
    return lines + [""]


if __name__ == "__main__":
    main()
