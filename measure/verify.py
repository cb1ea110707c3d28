"""Verification on the device: compress with the advisor's choice, measure it for real, compare,
and append the measured rows to the dataset so the next retraining learns from them."""

from __future__ import annotations

from pathlib import Path

from advisor.recommend import LOWER_IS_BETTER


def _measured_targets(row: dict) -> dict[str, float | None]:
    return {"latency_ms": row.get("latency_ms_median"), "energy_mj": row.get("energy_mj"),
            "size_mb": row["size_bytes"] / 1e6 if row.get("size_bytes") is not None else None,
            "accuracy_delta_pp": row.get("accuracy_delta_pp")}


def verify_recommendation(rec, *, model: str, device: str, data: str | None, store: Path, threads: int = 1,
                          input_size: int | None = None) -> dict:
    """Measure the recommended plan (or the kept model) on `device`; predicted against measured.

    Returns a dict with `technique`, `measured`, `predicted` (p50s), `constraints_hold`
    (per constraint), `saved_to`, `lines` (for people) and `next_candidate` when one breaks.
    """
    from advisor.store import Store
    from measure.devices import get_device
    from measure.runner import MeasureSettings, measure

    technique = rec.technique or "none"
    is_file = Path(model).exists() or rec.model.startswith("file:")
    settings = MeasureSettings(input_size=input_size if input_size is not None or is_file else _zoo_size(rec.model),
                               threads=threads, dataset=data)
    result = measure(model.split("@")[0] if "@" in model and not Path(model).exists() else model,
                     technique, get_device(device), settings)
    saved = result.save(Store(store))
    measured = _measured_targets(result.row)
    predicted = {t: (b["p50"] if b else None) for t, b in rec.predicted.items()}
    holds: dict[str, bool] = {}
    for target, limit in rec.constraints.limits().items():
        value = measured.get(target)
        if value is None:
            continue
        holds[target] = value <= limit if LOWER_IS_BETTER[target] else value >= limit
    lines = [f"{'target':<18} {'predicted p50':>14} {'p10-p90':>21} {'measured':>12}  in band"]
    for t in ("latency_ms", "size_mb", "energy_mj", "accuracy_delta_pp"):
        p, m, band = predicted.get(t), measured.get(t), rec.predicted.get(t)
        if p is None and m is None:
            continue
        digits = 2 if t == "accuracy_delta_pp" else None
        span = f"{_cell(band['p10'], digits)}-{_cell(band['p90'], digits)}" if band else "n/a"
        inside = ("yes" if band["p10"] <= m <= band["p90"] else "no") if band and m is not None and m == m else "-"
        lines.append(f"{t:<18} {_cell(p, digits):>14} {span:>21} {_cell(m, digits):>12}  {inside}")
    if result.row.get("weights") == "random":
        lines.append("measured with random weights (none cached for this network): a file of untrained weights "
                     "shares its zero biases, so it is slightly smaller than the trained network predicted, and "
                     "its accuracy means nothing")
    for t, ok in holds.items():
        lines.append(f"{t} constraint {'HOLDS' if ok else 'IS BROKEN'} when measured")
    if measured["accuracy_delta_pp"] is None:
        lines.append("accuracy not measured: pass --data (labelled data) to measure the accuracy change"
                     + (" and check the accuracy limit" if rec.constraints.max_accuracy_drop is not None else ""))
    nxt = None
    if holds and not all(holds.values()):
        nxt = next((a["technique"] for a in rec.alternatives), None)
        lines.append(f"the measured result breaks a constraint; next candidate to try: {nxt or 'none left'}")
    lines.append(f"rows stored in {saved} (the next `advisor train` learns from them)")
    return {"technique": technique, "measured": measured, "predicted": predicted, "constraints_hold": holds,
            "saved_to": str(saved), "next_candidate": nxt, "lines": lines}


def _zoo_size(model: str) -> int | None:
    """NAME@SIZE (as profiles are named) -> SIZE."""
    if "@" in model:
        try:
            return int(model.split("@")[1].split("-")[0])
        except ValueError:
            return None
    return None


def _cell(value: float | None, decimals: int | None = None) -> str:
    """A table cell: the value to 4 significant digits (or to `decimals` places), n/a where there is none."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.4g}" if decimals is None else f"{round(value, decimals) + 0.0:.{decimals}f}"  # no "-0.00"
