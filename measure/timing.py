"""Trustworthy inference timing: the seed study's stopping rule, plus interleaving against drift.

The rule: after warm-up, repeat until the 95% confidence interval of the mean is within 5% of
the mean (with minimum and maximum run counts and a time cap). On a shared machine, drift
between minutes is larger than that interval, so configurations that are compared are timed
interleaved in rounds (A B A B ...): each figure is the median over rounds, the spread between
rounds is kept, and ratios to the baseline come from the same rounds.

Raw times are always kept; every statistic is derived from them. Stdlib only and valid
Python 3.6, because the on-device agent ships this file as it is.
"""

import math
import statistics
import time

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def t95(dof):
    """Two-sided 95% quantile of Student's t with `dof` degrees of freedom."""
    if dof < 1:
        return float("inf")
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


class TimingPolicy(object):
    """When to stop timing. Immutable by convention (no setters are used)."""

    __slots__ = ("warmup", "min_runs", "max_runs", "time_cap_s", "rel_ci", "min_rounds", "max_rounds",
                 "round_s")

    def __init__(self, warmup=5, min_runs=10, max_runs=2000, time_cap_s=30.0, rel_ci=0.05,
                 min_rounds=5, max_rounds=40, round_s=0.25):
        if not (0 < rel_ci < 1 and 1 <= min_runs <= max_runs and time_cap_s > 0 and 1 <= min_rounds <= max_rounds):
            raise ValueError("impossible timing policy")
        self.warmup, self.min_runs, self.max_runs = int(warmup), int(min_runs), int(max_runs)
        self.time_cap_s, self.rel_ci = float(time_cap_s), float(rel_ci)
        self.min_rounds, self.max_rounds, self.round_s = int(min_rounds), int(max_rounds), float(round_s)

    def to_dict(self):
        return dict((k, getattr(self, k)) for k in self.__slots__)


def ci95_halfwidth_rel(values):
    """Half-width of the 95% confidence interval of the mean, relative to the mean."""
    n = len(values)
    if n < 2:
        return float("inf")
    mean = statistics.mean(values)
    if mean <= 0:
        return float("inf")
    return t95(n - 1) * statistics.stdev(values) / math.sqrt(n) / mean


def percentile(values, q):
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(raw_ms, rel_ci=0.05, round_medians=None):
    """Statistics derived from raw times (ms): mean, median, p90, min, CI, run count, rule met."""
    out = {
        "mean": statistics.mean(raw_ms),
        "median": statistics.median(raw_ms),
        "p90": percentile(raw_ms, 90),
        "min": min(raw_ms),
        "ci95_halfwidth_rel": ci95_halfwidth_rel(raw_ms),
        "runs": len(raw_ms),
    }
    out["rule_met"] = out["ci95_halfwidth_rel"] <= rel_ci
    if round_medians:
        med = statistics.median(round_medians)
        out["rounds_ms"] = list(round_medians)
        out["round_median"] = med
        out["round_spread_rel"] = (max(round_medians) - min(round_medians)) / med if med > 0 else float("nan")
    return out


def interleaved(runners, policy=None, clock=time.perf_counter, on_round=None):
    """Time several callables interleaved in rounds until each meets the rule (or a cap is hit).

    Args:
        runners: list of (label, callable) pairs; each callable runs one inference.
        policy: a TimingPolicy.
        clock: a monotonic clock in seconds (a fake one in tests).
        on_round: optional callback(round_index, labels_met) for progress.

    Returns:
        dict label -> {"raw_ms": [...], "round_medians_ms": [...], "windows": [(t0, t1, n)], "stats": {...}}
        plus, for every label after the first, "ratio_to_first": median over rounds of the
        per-round ratio of medians (the drift-free comparison).
    """
    policy = policy or TimingPolicy()
    labels = [label for label, _ in runners]
    fns = dict(runners)
    for label in labels:  # warm-up, and how many runs fill a round of about round_s
        for _ in range(policy.warmup):
            fns[label]()
    per_round = {}
    for label in labels:
        t0 = clock()
        fns[label]()
        one = max(clock() - t0, 1e-6)
        per_round[label] = max(1, min(policy.max_runs // policy.min_rounds, int(policy.round_s / one)))
    raw = dict((label, []) for label in labels)
    rounds = dict((label, []) for label in labels)
    windows = dict((label, []) for label in labels)
    start = clock()
    r = 0
    while True:
        for label in labels:
            fn, times = fns[label], []
            w0 = time.monotonic()
            for _ in range(per_round[label]):
                t0 = clock()
                fn()
                times.append((clock() - t0) * 1000.0)
            windows[label].append((w0, time.monotonic(), len(times)))
            raw[label].extend(times)
            rounds[label].append(statistics.median(times))
        r += 1
        met = [label for label in labels
               if len(raw[label]) >= policy.min_runs and ci95_halfwidth_rel(raw[label]) <= policy.rel_ci]
        if on_round is not None:
            on_round(r, met)
        if r >= policy.min_rounds and len(met) == len(labels):
            break
        if r >= policy.max_rounds or clock() - start > policy.time_cap_s:
            break
        if any(len(raw[label]) + per_round[label] > policy.max_runs for label in labels):
            break
    out = {}
    for label in labels:
        out[label] = {
            "raw_ms": raw[label],
            "round_medians_ms": rounds[label],
            "windows": windows[label],
            "stats": summarize(raw[label], policy.rel_ci, rounds[label]),
        }
    first = labels[0]
    for label in labels[1:]:
        ratios = [a / b for a, b in zip(rounds[label], rounds[first]) if b > 0]
        out[label]["ratio_to_first"] = statistics.median(ratios) if ratios else None
    return out
