"""The decision: keep, compress (how), or infeasible, with the reasons.

Input: the predicted p10/p50/p90 of every candidate (latency, energy, size, accuracy change)
for one network on one device, and the user's constraints. A budget counts as met only when
the predicted P-quantile meets it (P = `confidence`, default 0.9): the pessimistic side is the
upper quantile for latency, energy and size, and the lower one for the accuracy change. An
accuracy change the predictor has no evidence for is NaN: it never meets an accuracy limit,
ranks last when accuracy is the objective, and is left out of the best trade-off.

The seed study's lesson is built in: the uncompressed model is always a candidate, and it is
kept unless a compressed plan is feasible and better enough (`MIN_GAIN`) on the objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advisor.candidates import family_of
from advisor.errors import OptionError

TARGETS = ("latency_ms", "energy_mj", "size_mb", "accuracy_delta_pp")
LOWER_IS_BETTER = {"latency_ms": True, "energy_mj": True, "size_mb": True, "accuracy_delta_pp": False}
OBJECTIVES = {"accuracy": "accuracy_delta_pp", "latency": "latency_ms", "energy": "energy_mj", "size": "size_mb"}
#: A compressed plan must beat keeping the model by this much on the objective (relative for
#: latency, energy and size; in percentage points for accuracy) to be worth the trouble.
MIN_GAIN = {"latency_ms": 0.05, "energy_mj": 0.05, "size_mb": 0.05, "accuracy_delta_pp": 0.5}
#: Under the accuracy objective, plans whose accuracy bounds lie within this many points of the
#: best are a tie, which the fastest wins: the issue's own target for the accuracy change is a
#: mean error of 1 point, and held out by family the predictor's is several, so a smaller lead
#: is no reason to run slower.
ACCURACY_TIE_PP = 1.0
#: With no constraint at all ("best trade-off"): the fastest plan whose pessimistic accuracy
#: change stays within this many points.
TRADE_OFF_DROP_PP = 1.0
_Z90 = 1.2815515655446004


@dataclass(frozen=True)
class Constraints:
    """What the user asks for; None means unconstrained."""

    budget_ms: float | None = None
    budget_mj: float | None = None
    max_size_mb: float | None = None
    max_accuracy_drop: float | None = None
    objective: str = "accuracy"
    confidence: float = 0.9

    def __post_init__(self) -> None:
        for name in ("budget_ms", "budget_mj", "max_size_mb"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise OptionError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise OptionError(f"--max-accuracy-drop must be between 0 and 100 points, got {self.max_accuracy_drop}")
        if self.objective not in OBJECTIVES:
            raise OptionError(f"unknown objective '{self.objective}' (valid: {', '.join(OBJECTIVES)})")
        if not 0.5 <= self.confidence < 1:
            raise OptionError(f"--confidence must be in [0.5, 1), got {self.confidence}")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.budget_ms, self.budget_mj, self.max_size_mb, self.max_accuracy_drop))

    def limits(self) -> dict[str, float]:
        """Target -> limit, in the targets' own terms (accuracy: the lowest change allowed)."""
        out = {}
        if self.budget_ms is not None:
            out["latency_ms"] = self.budget_ms
        if self.budget_mj is not None:
            out["energy_mj"] = self.budget_mj
        if self.max_size_mb is not None:
            out["size_mb"] = self.max_size_mb
        if self.max_accuracy_drop is not None:
            out["accuracy_delta_pp"] = -self.max_accuracy_drop
        return out

    def to_dict(self) -> dict:
        return {"budget_ms": self.budget_ms, "budget_mj": self.budget_mj, "max_size_mb": self.max_size_mb,
                "max_accuracy_drop": self.max_accuracy_drop, "objective": self.objective,
                "confidence": self.confidence}


def quantile(q: np.ndarray, p: float) -> np.ndarray:
    """The P-quantile from p10/p50/p90 columns: interpolated inside, normal tails beyond."""
    p10, p50, p90 = q[:, 0], q[:, 1], q[:, 2]
    if p == 0.5:
        return p50
    if 0.5 < p <= 0.9:
        return p50 + (p90 - p50) * (p - 0.5) / 0.4
    if 0.1 <= p < 0.5:
        return p50 - (p50 - p10) * (0.5 - p) / 0.4
    z = _norm_ppf(p) / _Z90
    return p50 + (p90 - p50) * z if p > 0.5 else p50 + (p50 - p10) * z


def _norm_ppf(p: float) -> float:
    # Acklam's rational approximation is overkill; bisection on erf is exact enough and tiny.
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def pessimistic(pred: dict[str, np.ndarray], target: str, confidence: float) -> np.ndarray:
    """The side of the band a guarantee must hold on."""
    return quantile(pred[target], confidence if LOWER_IS_BETTER[target] else 1 - confidence)


def objective_values(pred: dict[str, np.ndarray], target: str, confidence: float) -> np.ndarray:
    """Per candidate, what an objective ranks by: the median for latency, energy and size; for the
    accuracy change, its pessimistic bound at `confidence`, capped at 0.

    Capped, because no compression is credited with gaining accuracy: a predicted gain is the
    accuracy model extrapolating from small networks whose short training the plan's own training
    continued, and a search over thousands of plans finds exactly the ones where it errs upwards.
    Pessimistic, because of two plans with the same median the one whose loss is surer ranks first.
    Unknown (NaN) stays NaN and ranks last."""
    if target == "accuracy_delta_pp":
        return np.minimum(pessimistic(pred, target, confidence), 0.0)
    return pred[target][:, 1]


@dataclass
class Choice:
    """One candidate with its predictions (p10/p50/p90 per target) and verdict."""

    technique: str
    predicted: dict[str, dict[str, float] | None]
    feasible: bool
    misses: dict[str, float] = field(default_factory=dict)  # target -> by how much (its units)

    def to_dict(self) -> dict:
        return {"technique": self.technique, "predicted": self.predicted, "feasible": self.feasible,
                "misses": self.misses}


def _bands(pred: dict[str, np.ndarray], i: int) -> dict[str, dict[str, float] | None]:
    out: dict[str, dict[str, float] | None] = {}
    for t in TARGETS:
        if t in pred:
            p10, p50, p90 = (float(x) for x in pred[t][i])
            out[t] = {"p10": p10, "p50": p50, "p90": p90}
        else:
            out[t] = None
    return out


def pareto_front(lat: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices not dominated in (latency lower, accuracy change higher), by latency."""
    order = np.lexsort((-acc, lat))
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best + 1e-12:
            front.append(int(i))
            best = acc[i]
    return np.asarray(front, dtype=int)


def decide(specs: list[str], pred: dict[str, np.ndarray], constraints: Constraints) -> dict[str, Any]:
    """The decision over candidates `specs` (index 0 must be `none`) and their predictions.

    Returns a dict with `decision`, `choice` index, `feasible` mask, `misses`, `reasons`
    (per rejected family), `pareto` indices and `explanation` lines.
    """
    if specs[0] != "none":
        raise ValueError("the first candidate must be the uncompressed model")
    n = len(specs)
    limits = constraints.limits()
    for target in limits:
        if target not in pred:
            raise OptionError(f"the predictor has no {target.replace('_', ' ')} model for this device "
                              f"(no measured rows with it), so that constraint cannot be checked")
    conf = constraints.confidence
    miss = {t: np.zeros(n) for t in limits}
    for t, lim in limits.items():
        v = pessimistic(pred, t, conf)
        miss[t] = np.maximum(v - lim, 0) if LOWER_IS_BETTER[t] else np.maximum(lim - v, 0)
    feasible = np.ones(n, bool)
    for t in limits:
        feasible &= miss[t] <= 0
    obj = OBJECTIVES[constraints.objective]
    if obj not in pred:
        obj = "latency_ms" if "latency_ms" in pred else next(iter(pred))
    explanation: list[str] = []
    acc = pred["accuracy_delta_pp"][:, 1] if "accuracy_delta_pp" in pred else np.zeros(n)
    lat = pred["latency_ms"][:, 1] if "latency_ms" in pred else np.zeros(n)

    value = objective_values(pred, obj, conf)
    tie_floor = -np.inf  # under the accuracy objective, the lowest accuracy bound still in the tie

    def better(i: int, j: int) -> bool:
        """Is candidate i better enough than j on the objective?"""
        a, b = value[i], value[j]
        if obj == "accuracy_delta_pp":
            return bool(a >= b + MIN_GAIN[obj])
        return bool(a <= b * (1 - MIN_GAIN[obj]))

    def rank(idx: np.ndarray) -> np.ndarray:
        """Best first by the objective (`objective_values`), ties broken by latency then accuracy."""
        key = -value[idx] if obj == "accuracy_delta_pp" else value[idx]
        return idx[np.lexsort((-acc[idx], lat[idx], np.round(key, 9)))]

    if not constraints.any:
        # Best trade-off: the fastest plan whose pessimistic accuracy change stays near zero.
        ok = np.ones(n, bool)
        if "accuracy_delta_pp" in pred:
            drop = pessimistic(pred, "accuracy_delta_pp", conf)
            ok = drop >= -TRADE_OFF_DROP_PP
            ok[0] = True
            # The implicit accuracy limit, so that each rejected family says what it breaks.
            miss["accuracy_delta_pp"] = np.where(ok, 0.0, -TRADE_OFF_DROP_PP - drop)
        idx = np.flatnonzero(ok)
        best = int(idx[np.argmin(lat[idx])]) if "latency_ms" in pred else 0
        if best != 0 and lat[best] > lat[0] * (1 - MIN_GAIN["latency_ms"]):
            best = 0
        decision = "keep" if best == 0 else "compress"
        explanation.append("no constraint given: best trade-off = the fastest plan predicted to lose at most "
                           f"{TRADE_OFF_DROP_PP:g} point(s) of accuracy (at the {conf:.0%} pessimistic bound)")
        feasible = ok
    else:
        idx = np.flatnonzero(feasible)
        if idx.size == 0:
            # nearest: smallest total relative miss
            rel = np.zeros(n)
            for t, lim in limits.items():
                rel += miss[t] / max(abs(lim), 1e-9)
            best = int(np.argmin(rel))
            decision = "infeasible"
        else:
            ordered = rank(idx)
            best = leader = int(ordered[0])
            tie_winner = -1
            if obj == "accuracy_delta_pp" and np.isfinite(value[best]):
                # "accuracy, then latency": a lead below the predictions' resolution is a tie
                tie_floor = float(value[best]) - ACCURACY_TIE_PP
                tied = ordered[value[ordered] >= tie_floor]
                fastest = int(tied[np.argmin(lat[tied])])
                if lat[fastest] < lat[best]:
                    best = tie_winner = fastest
            if feasible[0] and best != 0 and not better(best, 0):
                best = 0
            if best == tie_winner:  # said only when the tie decided the answer
                explanation.append(
                    f"{specs[best]} is taken over {specs[leader]}: their accuracy changes at the "
                    f"{conf:.0%} bound ({value[best]:+.2f} and {value[leader]:+.2f} pp) are within "
                    f"{ACCURACY_TIE_PP:g} point of each other, a tie, and it is the faster")
            decision = "keep" if best == 0 else "compress"

    # With no constraint the choice was the fastest plan: the rejected families say so in latency.
    ranked_by = "latency_ms" if not constraints.any and "latency_ms" in pred else obj
    reasons = _family_reasons(specs, pred, feasible, miss, best, conf,
                              value if ranked_by == obj else objective_values(pred, ranked_by, conf), ranked_by,
                              tie_floor)
    front = pareto_front(lat, acc) if "latency_ms" in pred else np.asarray([0])
    return {"decision": decision, "choice": best, "feasible": feasible,
            "misses": {t: miss[t] for t in limits if t in miss}, "reasons": reasons, "pareto": front,
            "objective": obj, "explanation": explanation}


_UNITS = {"latency_ms": "ms", "energy_mj": "mJ", "size_mb": "MB", "accuracy_delta_pp": "pp"}
_MISSES = {"latency_ms": "misses the latency budget", "energy_mj": "misses the energy budget",
           "size_mb": "exceeds the size limit", "accuracy_delta_pp": "breaks the accuracy limit"}


def describe_miss(target: str, by: float, conf: float) -> str:
    """'misses the latency budget by 8.19 ms at the 90% bound', and the like for each target."""
    return f"{_MISSES[target]} by {by:.3g} {_UNITS[target]} at the {conf:.0%} bound"


def _not_better(specs: list[str], members: np.ndarray, value: np.ndarray, lat: np.ndarray, obj: str,
                best: int, conf: float, tie_floor: float) -> str:
    """Why a family with feasible members lost: its best feasible member against the choice, in
    the objective's own numbers (`value`, as `decide` ranked them). `tie_floor`: under the
    accuracy objective, the lowest value in the tie the choice was taken from."""
    higher = obj == "accuracy_delta_pp"
    key = np.where(np.isfinite(value[members]), -value[members] if higher else value[members], np.inf)
    j = int(members[np.lexsort((lat[members], key))[0]])
    chosen = "keeping the model" if best == 0 else specs[best]
    if higher:
        if not np.isfinite(value[j]):
            return f"feasible, but no accuracy change is known for it ({specs[j]}), so it ranks last"
        if value[j] < tie_floor:
            return (f"feasible, less accurate: {specs[j]} {value[j]:+.2f} pp at the {conf:.0%} bound, "
                    f"against {value[best]:+.2f} for {chosen}")
        if best == 0:
            return (f"feasible, gains no accuracy: {specs[j]} {value[j]:+.2f} pp at the {conf:.0%} bound, "
                    "and the model as it is meets the constraints")
        # In the tie the choice won as the fastest, so this plan is no faster.
        return (f"feasible, as accurate but slower: {specs[j]} {value[j]:+.2f} pp at the {conf:.0%} bound and "
                f"{lat[j]:.3g} ms, against {value[best]:+.2f} pp and {lat[best]:.3g} ms for {chosen}")
    unit = _UNITS[obj]
    if best == 0:
        return (f"feasible, gains under {MIN_GAIN[obj]:.0%}: {specs[j]} {value[j]:.3g} {unit}, against "
                f"{value[0]:.3g} {unit} uncompressed")
    worse = {"latency_ms": "slower", "energy_mj": "uses more energy", "size_mb": "larger"}[obj]
    return f"feasible, {worse}: {specs[j]} {value[j]:.3g} {unit}, against {value[best]:.3g} {unit} for {chosen}"


def _family_reasons(specs: list[str], pred: dict[str, np.ndarray], feasible: np.ndarray, miss: dict[str, np.ndarray],
                    best: int, conf: float, value: np.ndarray, obj: str, tie_floor: float) -> dict[str, str]:
    """For each technique family not chosen, why (from its best member); `value`: what the
    decision ranked feasible plans by (`objective_values` of `obj`); `tie_floor`: the accuracy tie
    `decide` took the choice from reaches down to it (-inf without one)."""
    lat = pred.get("latency_ms")
    reasons: dict[str, str] = {}
    families: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        families.setdefault(family_of(s), []).append(i)
    chosen_family = family_of(specs[best])
    for fam, members in families.items():
        if fam == chosen_family or fam == "none":
            continue
        m = np.asarray(members)
        if lat is not None:
            j = int(m[np.argmin(lat[m, 1])])
        else:
            j = int(m[0])
        parts = []
        if lat is not None and lat[j, 1] > lat[0, 1] * 1.02:
            parts.append(f"slower here (×{lat[j, 1] / lat[0, 1]:.2f} predicted for its fastest, {specs[j]})")
        for t, mv in miss.items():
            if mv[j] > 0:
                parts.append(f"{describe_miss(t, mv[j], conf)} ({specs[j]})")
        acc = pred.get("accuracy_delta_pp")
        if acc is not None and not np.isfinite(acc[m, 1]).any():
            parts.append("accuracy change unknown: no training row measured it, so it is never promised")
        if not parts:
            if feasible[m].any():
                lat_all = lat[:, 1] if lat is not None else np.zeros(len(specs))
                parts.append(_not_better(specs, m[feasible[m]], value, lat_all, obj, best, conf, tie_floor))
            else:
                parts.append("not feasible")
        reasons[fam] = "; ".join(parts)
    return reasons
