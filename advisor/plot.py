"""The Pareto front as a PNG (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from pathlib import Path

from advisor.errors import OptionError


def pareto_png(rec, path: Path) -> Path:
    """Latency against accuracy change for the Pareto front, the choice marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OptionError("--plot needs matplotlib (pip install compression-advisor[plot])") from exc
    front = rec.pareto
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [p["latency_ms"] for p in front]
    ys = [p["accuracy_delta_pp"] if p["accuracy_delta_pp"] is not None else 0.0 for p in front]
    ax.plot(xs, ys, "o-", color="tab:blue", label="Pareto front (predicted medians)")
    for p, x, y in zip(front, xs, ys):
        ax.annotate(p["technique"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    chosen = [(x, y) for p, x, y in zip(front, xs, ys) if p["chosen"]]
    if chosen:
        ax.plot(*chosen[0], "*", markersize=16, color="tab:red", label=f"choice: {rec.technique or 'keep'}")
    if rec.constraints.budget_ms is not None:
        ax.axvline(rec.constraints.budget_ms, color="grey", ls="--", label="latency budget")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy change (pp)")
    ax.set_title(f"{rec.model} on {rec.device}: {rec.decision}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
