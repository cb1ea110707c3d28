"""Benchmark: the size model alone, held out by family, in about a minute a fold seed.

`advisor train --evaluate family` refits every component in each fold (half an hour here); a
change to how file bytes are counted (`advisor.features.fill_derived`, `SizeChange`) touches the
size components only. This fits just those in the same family folds as `advisor evaluate`
(`evaluate._folds`, five folds, the given seeds): the size prior, the plan's change from the
network's float file and the size booster, and scores the median as the evaluation does (a
network's own float file is exact). Seed 0 is the split `advisor evaluate` reports; other seeds
say how much of a change is the folds' luck.

On 2026-12-07 (13,920 stored rows, 5,345 held-out sizes) this measured the recurrent loops'
sequence buffers (`features.LOOP_RECURRENT_LAYERS`): seed 0 97.77% -> 98.24% within 5%, seed 1
98.43% -> 98.54%, seed 2 98.32% -> 98.33%. On 2026-12-07 (16,976 rows) it measured QAT's dense
kernels quantized per tensor (`predictor.QAT_DENSE_CHANNEL_BYTES`) and each file counted once
however many machines measured it (`predictor.one_per_file`): 97.50/98.08/97.99% -> 98.01/98.15/
97.98% (seeds 0/1/2).

    python bench/size_replay.py [--seeds 0,1,2] [--data training_data] [--out bench/results/size_replay.md]
        [--rows rows.csv]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._report import publish  # noqa: E402
from bench._rows import ok_rows  # noqa: E402


def replay(rows, profiles, fingerprints, seed: int) -> list[tuple]:
    """(config id, family, plan kind, technique, measured, predicted) per held-out size."""
    from advisor import features as F
    from advisor import predictor as P
    from advisor.evaluate import _folds, _probes, plan_kinds
    from advisor.trees import Forest

    fold, _ = _folds(rows, "family", 5, seed)
    probe = _probes(rows)
    data = P.prepare(rows, profiles, fingerprints, F.float_files(rows))
    model = P.Predictor()
    params = model._xgb_params()
    size = P.COMPONENTS["size"]
    ids, techniques = rows["config_id"].to_numpy(), rows["technique"].astype(str).to_numpy()
    out = []
    for k in range(int(fold.max()) + 1):
        train, held = data.take(fold != k), (fold == k) & ~probe
        test = data.take(held)
        priors = P.fit_size_priors(train)
        X, y = size.select(train, priors)
        keep = np.isfinite(y)
        forest = Forest.from_json(P._TRAINERS[-1](params, size.inputs(X)[keep], y[keep], model.n_estimators))
        q = forest.predict(size.inputs(test.X))
        pred = np.exp(q[:, 1]) * P.size_anchor(priors, test.X)
        exact = P._is_float_file(test.X)
        pred[exact] = test.X[exact, F.INDEX["float_file_bytes"]]
        kinds = plan_kinds(test.X)
        for i in np.flatnonzero(test.measured & P._positive(test.size)):
            out.append((ids[held][i], test.family[i], kinds[i], techniques[held][i], test.size[i], pred[i]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "training_data"))
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds, comma-separated (0: advisor evaluate's)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "size_replay.md"))
    ap.add_argument("--rows", default=None, help="also write every held-out size of the first seed to this CSV")
    args = ap.parse_args()

    from advisor.fingerprint import collect_fingerprint, fingerprint_id

    rows, profiles, fingerprints = ok_rows(args.data)
    now = dt.datetime.now(dt.timezone.utc)
    fp = collect_fingerprint()
    lines = ["# The size model held out by family (`bench/size_replay.py`)", "",
             f"{now:%Y-%m-%d %H:%M} UTC, {fp.get('cpu_model')} ({fingerprint_id(fp)}, {fp.get('logical_cpus')} logical "
             f"CPUs); {len(rows):,} stored rows "
             f"(status ok) from {args.data}. Within ±5% of the measured file, the median prediction.", "",
             "| fold seed | held-out sizes | within ±5% | misses | whole-model | structural | layer-wise |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    worst: dict[str, int] = {}
    for n, seed in enumerate(int(s) for s in args.seeds.split(",")):
        got = replay(rows, profiles, fingerprints, seed)
        truth = np.array([g[4] for g in got])
        err = np.array([g[5] for g in got]) / truth - 1.0
        miss = np.abs(err) > 0.05
        kinds = np.array([g[2] for g in got])

        def share(kind: str, kinds=kinds, miss=miss) -> str:
            sel = kinds == kind
            return f"{100 * (1 - miss[sel].mean()):.1f}% of {sel.sum()}" if sel.any() else "-"

        lines.append(f"| {seed} | {len(got):,} | {100 * (1 - miss.mean()):.2f}% | {miss.sum()} | "
                     f"{share('whole-model')} | {share('structural')} | {share('layer-wise')} |")
        for g, m in zip(got, miss):
            if m:
                worst[g[3]] = worst.get(g[3], 0) + 1
        if n == 0 and args.rows:
            import pandas as pd
            pd.DataFrame([(*g, e) for g, e in zip(got, err)],
                         columns=["config_id", "family", "plan", "technique", "measured", "predicted", "error"]
                         ).to_csv(args.rows, index=False)
    lines += ["", "Misses by technique, all seeds together (most first): " + ", ".join(
        f"{t} {c}" for t, c in sorted(worst.items(), key=lambda kv: -kv[1])[:12]), ""]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
