"""Human-readable rendering of a recommendation (the JSON is the contract; this is its view)."""

from __future__ import annotations

from collections.abc import Callable

UNITS = {"latency_ms": "ms", "energy_mj": "mJ", "size_mb": "MB", "accuracy_delta_pp": "pp"}
LABELS = {"latency_ms": "latency", "energy_mj": "energy", "size_mb": "size", "accuracy_delta_pp": "accuracy Δ"}


def _pp(v: float) -> str:
    """An accuracy change in points, to two decimals, a median of -7e-08 as +0.00 (not -7.1e-08 or -0.00)."""
    return f"{round(float(v), 2) or 0.0:+.2f}"


def _band(b: dict | None, unit: str) -> str:
    if b is None:
        return "unknown" if unit == "pp" else "n/a"  # an accuracy change without evidence, or no model
    if unit == "pp":
        return f"{_pp(b['p50'])} pp [{_pp(b['p10'])}–{_pp(b['p90'])}]"
    return f"{b['p50']:.3g} {unit} [{b['p10']:.3g}–{b['p90']:.3g}]"


def print_recommendation(out: dict, echo: Callable[[str], None]) -> None:
    """Print the decision first, then the figures, the reasons and the Pareto front."""
    decision = out["decision"]
    head = {"keep": "KEEP the model uncompressed", "compress": f"COMPRESS with {out['technique']}",
            "infeasible": "INFEASIBLE: nothing meets the constraints"}[decision]
    echo(f"{head}  ({out['model']} on {out['device']})")
    for line in out["explanation"]:
        echo(f"  {line}")
    echo("")
    echo(f"  {'':<12} {'choice' if decision != 'keep' else 'kept':<34} {'uncompressed':<34}")
    for t, unit in UNITS.items():
        if out["predicted"].get(t) is None and out["baseline"].get(t) is None:
            continue
        echo(f"  {LABELS[t]:<12} {_band(out['predicted'].get(t), unit):<34} {_band(out['baseline'].get(t), unit):<34}")
    if out.get("nearest"):
        echo(f"  nearest: {out['nearest']['technique']} misses "
             + ", ".join(f"{k} by {v:.3g}" for k, v in out["nearest"]["misses"].items()))
    if out["alternatives"]:
        echo("\n  runners-up:")
        for a in out["alternatives"]:
            p = a["predicted"]
            echo(f"    {a['technique']:<28} latency {_band(p.get('latency_ms'), 'ms'):<30} "
                 f"size {_band(p.get('size_mb'), 'MB')}")
    if out.get("rejected"):
        echo("\n  why not the others:")
        for fam, why in out["rejected"].items():
            echo(f"    {fam:<28} {why}")
    echo("\n  Pareto front (latency against accuracy change, medians):")
    for p in out["pareto"]:
        acc = f"{_pp(p['accuracy_delta_pp'])} pp" if p["accuracy_delta_pp"] is not None else "acc n/a"
        size = f"{p['size_mb']:.3g} MB" if p["size_mb"] is not None else ""
        echo(f"    {'*' if p['chosen'] else ' '} {p['technique']:<28} {p['latency_ms']:.3g} ms  {acc}  {size}")
    pr = out["predictor"]
    echo(f"\n  predictor {pr['version']}: {pr['rows_total']} rows, {pr['rows_device']} on this device, "
         f"{pr['rows_family']} of this family; {pr['candidates']} candidates scored")
    if out.get("verification"):
        v = out["verification"]
        echo("\n  verified on the device:")
        for line in v.get("lines", []):
            echo(f"    {line}")
