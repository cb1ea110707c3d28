"""Held-out evaluation of the predictor, against the FLOPs-proportional baseline.

`evaluate(rows, profiles, split=...)` trains on part of the rows and predicts the rest, in turn,
then scores the pooled held-out predictions:

  family  whole architecture families held out (group k-fold on the `family` column: resnet,
          mobilenet_v2, ..., sampled-residual): the honest test for a network nobody measured;
  random  random k-fold over rows (optimistic: a held-out row's siblings are in training);
  device  leave-one-device-out (needs two devices; with one, the result says so).

Scores: for latency, size and energy, the share of predictions (p50) within 5%, 10% and 25% of
the truth (5% is there for size, which is nearly deterministic), the mean absolute percentage
error, Spearman's rank correlation, and how often the truth falls inside the p10-p90 band
(ideally 80%); for the accuracy change, the mean absolute error in percentage points and the
share within 1 pp.

Kernel probes (families ending in "_kernel": one layer between an input and a classifier, see
`plans/kernels.toml`) are training material, not networks a user brings: every fold trains on
them and no score counts them.

The FLOPs-proportional baseline, on the same split: latency = the row's MACs x the median
ms-per-MAC of the training rows on the same device, threads and technique (falling back to
device and technique, then device, then technique, then all rows where a level has no rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from advisor import features as F
from advisor.errors import OptionError
from advisor.predictor import Predictor, TrainingData, is_probe, prepare
from advisor.profile import ModelProfile
from advisor.progress import stage

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("family", "random", "device")
RATIO_TARGETS = ("latency", "size", "energy")


def _probes(rows: pd.DataFrame) -> np.ndarray:
    return is_probe(rows["family"].astype(str).to_numpy()) if "family" in rows.columns else np.zeros(len(rows), bool)


def _folds(rows: pd.DataFrame, split: str, k: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """A fold number per row, and notes. Kernel probes get -1 (in every fold's training rows) in
    the family and random splits; in the device split they go with their device."""
    rng = np.random.default_rng(seed)
    keep_in = _probes(rows) if split != "device" else np.zeros(len(rows), bool)
    if split == "random":
        fold = rng.permutation(len(rows)) % max(min(k, len(rows)), 1)
        return np.where(keep_in, -1, fold), []
    column = "family" if split == "family" else "device"
    groups = rows[column].astype(str).to_numpy()
    unique = np.unique(groups[~keep_in])
    if len(unique) < 2:
        what = "families" if split == "family" else "devices"
        only = ", ".join(unique) or "none"
        return np.zeros(len(rows), dtype=int), [
            f"a {split} split needs at least two {what}; the data has one ({only}), so nothing was held out"]
    n_folds = len(unique) if split == "device" else min(k, len(unique))
    fold_of = dict(zip(rng.permutation(unique), np.arange(len(unique)) % n_folds))
    return np.array([fold_of.get(g, -1) for g in groups]), []


def _ratio_metrics(y: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(y) & (y > 0) & np.isfinite(q).all(axis=1)
    y, q = y[ok], q[ok]
    n = int(len(y))
    if n == 0:
        return {"within_5pct": None, "within_10pct": None, "within_25pct": None, "mape": None, "spearman": None,
                "interval_coverage_80": None, "n": 0}
    rel = np.abs(q[:, 1] / y - 1.0)
    return {"within_5pct": float(np.mean(rel <= 0.05)), "within_10pct": float(np.mean(rel <= 0.10)),
            "within_25pct": float(np.mean(rel <= 0.25)),
            "mape": float(np.mean(rel)), "spearman": _spearman(q[:, 1], y),
            "interval_coverage_80": float(np.mean((q[:, 0] <= y) & (y <= q[:, 2]))), "n": n}


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _accuracy_metrics(y: np.ndarray, q: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(y) & np.isfinite(q[:, 1])
    err = np.abs(q[ok, 1] - y[ok])
    if err.size == 0:
        return {"mae_pp": None, "within_1pp": None, "n": 0}
    return {"mae_pp": float(err.mean()), "within_1pp": float(np.mean(err <= 1.0)), "n": int(err.size)}


def flops_proxy(train: TrainingData, test: TrainingData) -> np.ndarray:
    """FLOPs-proportional latency for each test row (NaN where nothing applies)."""
    macs = F.INDEX["macs"]
    threads = F.INDEX["threads"]
    ok = train.measured & np.isfinite(train.latency) & (train.latency > 0) & (train.X[:, macs] > 0)
    spec = _spec_keys(train.X)
    per_mac = train.latency[ok] / train.X[ok, macs]
    keys = list(zip(train.device[ok], train.X[ok, threads], spec[ok]))
    levels: list[dict[tuple, list[float]]] = [{} for _ in range(5)]
    for (dev, thr, tech), v in zip(keys, per_mac):
        for level, key in enumerate(((dev, thr, tech), (dev, tech), (dev,), (tech,), ())):
            levels[level].setdefault(key, []).append(v)
    medians = [{k: float(np.median(v)) for k, v in lv.items()} for lv in levels]
    test_spec = _spec_keys(test.X)
    out = np.full(len(test), np.nan)
    for i in range(len(test)):
        dev, thr, tech = test.device[i], test.X[i, threads], test_spec[i]
        for level, key in enumerate(((dev, thr, tech), (dev, tech), (dev,), (tech,), ())):
            if key in medians[level]:
                out[i] = test.X[i, macs] * medians[level][key]
                break
    return out


def _spec_keys(X: np.ndarray) -> np.ndarray:
    """A hashable key per row for its technique block (equal pipelines, equal keys)."""
    block = X[:, F.TECHNIQUE_BLOCK]
    return np.array([row.tobytes() for row in block], dtype=object)


PLAN_KINDS = ("whole-model", "structural", "layer-wise")


def plan_kinds(X: np.ndarray) -> np.ndarray:
    """Per row: "structural" (distill / lowrank steps), "layer-wise" (a numeric step on some layers
    only) or "whole-model"."""
    structural = F.has_structure(X)
    cover = X[:, [F.INDEX[f"cover_{k}"] for k in F.LAYERWISE_KINDS]]
    layerwise = np.any((cover > 0) & (cover < 1), axis=1)
    return np.where(structural, "structural", np.where(layerwise, "layer-wise", "whole-model"))


def evaluate(rows: pd.DataFrame, profiles: Mapping[str, ModelProfile], split: str = "family", seed: int = 0,
             folds: int = 5, params: Mapping[str, Any] | None = None,
             fingerprints: Mapping[str, Mapping[str, Any]] | None = None,
             predictions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Held-out scores of the predictor and of the FLOPs-proportional baseline.

    Args:
        rows: measurement rows (`Store.read()`); profiles: by digest.
        split: "family", "random" or "device" (see the module docstring).
        folds: k for the family and random splits (the device split holds out each device).
        params: `Predictor` parameters for every fold's model.
        predictions: if a list, one dict per held-out row and target is appended to it
            (`PREDICTION_COLUMNS`: the row's config id, family, device, plan kind, fold, the
            truth and the p10/p50/p90 predicted for it, in natural units).

    Returns:
        {"split", "targets": {"latency"|"size"|"energy": {"within_5pct", "within_10pct", "within_25pct",
        "mape", "spearman", "interval_coverage_80", "n"}, "accuracy_drop": {"mae_pp", "within_1pp", "n"}},
        "baselines": {"flops_proxy": {"latency": {"within_10pct", "mape"}}}, "by_plan": {"whole-model" |
        "structural" | "layer-wise": {"latency", "size", "accuracy_drop"}}, "by_family": {family:
        {"latency", "size"}}, "by_device": {device: {"latency", "size"}}}, plus "notes" (a
        list of strings) when something could not be evaluated. Scores are None where n is 0.

    Raises:
        OptionError: an unknown split.
    """
    if split not in SPLITS:
        raise OptionError(f"unknown split {split!r} (valid: {', '.join(SPLITS)})")
    if "status" in rows.columns:
        rows = rows[(rows["status"] == "ok").fillna(False).to_numpy(dtype=bool)]
    rows = rows.reset_index(drop=True)
    fold, notes = _folds(rows, split, folds, seed)
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {t: [] for t in (*RATIO_TARGETS, "accuracy_delta")}
    proxy: list[tuple[np.ndarray, np.ndarray]] = []
    n_folds = int(fold.max()) + 1 if len(fold) and not notes else 0
    probe = _probes(rows)  # never scored, whatever the split
    # A held-out network's float file is what profiling it converts: its own uncompressed rows'.
    files = F.float_files(rows)
    for k in range(n_folds):
        train_rows, test_rows = rows[fold != k], rows[(fold == k) & ~probe]
        if len(test_rows) == 0:
            continue
        stage(f"evaluating, {split} split: fold {k + 1} of {n_folds} ({len(test_rows):,} held-out rows)")
        try:
            model = Predictor(**(params or {})).fit(train_rows, profiles, fingerprints)
        except OptionError as exc:
            notes.append(f"fold {k + 1}/{n_folds} not evaluated: {exc}")
            continue
        train = prepare(train_rows, profiles, fingerprints, files)
        test = prepare(test_rows, profiles, fingerprints, files)
        if len(test) == 0:
            continue
        pred = model.predict(test.X)
        kinds = plan_kinds(test.X)
        for target, (mask, y) in _natural_truth(test).items():
            if target in pred and mask.any():
                pooled[target].append((y[mask], pred[target][mask], kinds[mask], test.family[mask],
                                       test.device[mask]))
                if predictions is not None:
                    predictions.extend(_prediction_rows(k, target, test, mask, y, pred[target], kinds))
        lat = test.measured & np.isfinite(test.latency) & (test.latency > 0)
        proxy.append((test.latency[lat], flops_proxy(train, test)[lat]))

    def joined(target: str, kind: str | None = None, family: str | None = None,
               device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        parts = pooled[target]
        if not parts:
            return np.zeros(0), np.zeros((0, 3))
        y, q = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        keep = np.ones(len(y), dtype=bool)
        for column, wanted in ((2, kind), (3, family), (4, device)):
            if wanted is not None:
                keep &= np.concatenate([p[column] for p in parts]) == wanted
        return y[keep], q[keep]

    targets: dict[str, Any] = {t: _ratio_metrics(*joined(t)) for t in RATIO_TARGETS}
    targets["accuracy_drop"] = _accuracy_metrics(*joined("accuracy_delta"))
    by_plan = {kind: {"latency": _ratio_metrics(*joined("latency", kind)),
                      "size": _ratio_metrics(*joined("size", kind)),
                      "accuracy_drop": _accuracy_metrics(*joined("accuracy_delta", kind))} for kind in PLAN_KINDS}
    families = sorted({str(f) for t in ("latency", "size") for p in pooled[t] for f in p[3]})
    by_family = {f: {"latency": _ratio_metrics(*joined("latency", family=f)),
                     "size": _ratio_metrics(*joined("size", family=f))} for f in families}
    devices = sorted({str(v) for t in ("latency", "size") for p in pooled[t] for v in p[4]})
    by_device = {v: {"latency": _ratio_metrics(*joined("latency", device=v)),
                     "size": _ratio_metrics(*joined("size", device=v))} for v in devices}
    y = np.concatenate([p[0] for p in proxy]) if proxy else np.zeros(0)
    guess = np.concatenate([p[1] for p in proxy]) if proxy else np.zeros(0)
    base = _ratio_metrics(y, np.column_stack([guess, guess, guess]) if len(y) else np.zeros((0, 3)))
    result: dict[str, Any] = {
        "split": split, "targets": targets,
        "baselines": {"flops_proxy": {"latency": {"within_10pct": base["within_10pct"], "mape": base["mape"]}}},
        "by_plan": by_plan, "by_family": by_family, "by_device": by_device,
    }
    for name, metrics in targets.items():
        if metrics["n"] == 0 and n_folds:
            notes.append(f"{name}: no held-out rows could be predicted (no rows with it, or too few to train on)")
    if notes:
        result["notes"] = notes
    return result


#: The fields of each `evaluate(..., predictions=[])` entry, in order.
PREDICTION_COLUMNS = ("config_id", "family", "device", "plan", "fold", "target", "truth", "p10", "p50", "p90")


def _prediction_rows(fold: int, target: str, test: TrainingData, mask: np.ndarray, y: np.ndarray, q: np.ndarray,
                     kinds: np.ndarray) -> list[dict[str, Any]]:
    name = "accuracy_drop" if target == "accuracy_delta" else target
    return [dict(zip(PREDICTION_COLUMNS, (str(test.config_id[i]), str(test.family[i]), str(test.device[i]),
                                          str(kinds[i]), fold, name, float(y[i]), *map(float, q[i]))))
            for i in np.flatnonzero(mask)]


def write_predictions(path: Any, entries: list[dict[str, Any]]) -> None:
    """Write `evaluate`'s per-row predictions as CSV (atomically: a temp file beside it, renamed)."""
    import csv
    import io
    from pathlib import Path

    from advisor.atomic import write_bytes_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PREDICTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    write_bytes_atomic(Path(path), buffer.getvalue().encode())


def _natural_truth(d: TrainingData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.errstate(invalid="ignore"):
        return {
            "latency": (d.measured & np.isfinite(d.latency) & (d.latency > 0), d.latency),
            "size": (d.measured & np.isfinite(d.size) & (d.size > 0), d.size),
            "energy": (d.measured & np.isfinite(d.energy) & (d.energy > 0), d.energy),
            "accuracy_delta": (~F.is_original(d.X) & np.isfinite(d.accuracy), d.accuracy),
        }


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """A human-readable table of an `evaluate` result."""

    def pct(v: Any) -> str:
        return "    -" if v is None else f"{100 * v:5.1f}%"

    lines = [f"held-out evaluation, {result['split']} split",
             f"  {'target':<10} {'n':>6}  {'±5%':>6} {'±10%':>6} {'±25%':>6} {'MAPE':>6} {'rho':>5}  {'p10-p90':>7}"]
    for name in RATIO_TARGETS:
        m = result["targets"][name]
        rho = "    -" if m["spearman"] is None else f"{m['spearman']:5.2f}"
        lines.append(f"  {name:<10} {m['n']:>6}  {pct(m['within_5pct'])} {pct(m['within_10pct'])} "
                     f"{pct(m['within_25pct'])} "
                     f"{pct(m['mape'])} {rho}  {pct(m['interval_coverage_80'])}")
    acc = result["targets"]["accuracy_drop"]
    mae = "-" if acc["mae_pp"] is None else f"{acc['mae_pp']:.2f} pp"
    lines.append(f"  {'accuracy':<10} {acc['n']:>6}  MAE {mae}, within 1 pp {pct(acc['within_1pp']).strip()}")
    fp = result["baselines"]["flops_proxy"]["latency"]
    lines.append(f"  FLOPs-proportional latency: ±10% {pct(fp['within_10pct']).strip()}, "
                 f"MAPE {pct(fp['mape']).strip()}")
    for kind, m in (result.get("by_plan") or {}).items():
        lat, size, acc = m["latency"], m["size"], m["accuracy_drop"]
        if lat["n"] or acc["n"]:
            mae = "-" if acc["mae_pp"] is None else f"{acc['mae_pp']:.2f} pp"
            lines.append(f"  {kind + ' plans:':<20} latency n {lat['n']}, ±10% {pct(lat['within_10pct']).strip()}, "
                         f"±25% {pct(lat['within_25pct']).strip()}, p10-p90 {pct(lat['interval_coverage_80']).strip()}"
                         f"; size ±5% {pct(size['within_5pct']).strip()}; accuracy n {acc['n']}, MAE {mae}")
    ranked = sorted(((f, m["latency"]) for f, m in (result.get("by_family") or {}).items() if m["latency"]["n"]),
                    key=lambda fm: fm[1]["within_10pct"])
    if ranked:
        lines.append("  latency by family, worst first (±10%, n): " + ", ".join(
            f"{f} {pct(m['within_10pct']).strip()} ({m['n']})" for f, m in ranked))
    for device, m in (result.get("by_device") or {}).items():
        lat, size = m["latency"], m["size"]
        if lat["n"] or size["n"]:
            lines.append(f"  {device}: latency n {lat['n']}, ±10% {pct(lat['within_10pct']).strip()}, "
                         f"±25% {pct(lat['within_25pct']).strip()}, MAPE {pct(lat['mape']).strip()}, "
                         f"p10-p90 {pct(lat['interval_coverage_80']).strip()}; size n {size['n']}, "
                         f"±5% {pct(size['within_5pct']).strip()}")
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    return lines
