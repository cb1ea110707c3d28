"""Benchmark: the advisor's choice against the oracle, which measures every candidate.

For each network, every candidate of a fixed subset of `advisor.candidates.candidate_specs()`
(the single techniques and common combinations) is compressed, converted and timed on this
machine in one interleaved run (`measure.runner.measure_many`): that is the oracle. Budgets are
derived from the measured baseline latency (0.5x, 0.8x, 1.2x by default). For each budget:

  * the advisor answers over the same subset: `Advisor.score` on the subset's specs, then
    `advisor.recommend.decide` (the rule `advisor recommend` applies to every candidate);
  * the oracle applies the same `decide` to the measured values (zero-width bands: no
    uncertainty left), so both sides use the same keep rule, objective and tie-breaks;
  * reported: does the advisor's choice meet the budget when measured; the regret (measured
    latency, or accuracy with --data, of its choice against the oracle's choice); agreement on
    the decision; and the speed ratio: the oracle's measuring time over the advisor's answer
    time (a cold `advisor recommend` process, and in-process).

The latency objective is the default: without --data the measured accuracy of a random-weight
network means nothing, so accuracy regret needs --data (and --pretrain-epochs for zoo nets).
Writes bench/results/oracle.md (and the raw numbers beside it as oracle.json).

    python bench/oracle.py                                   # the full run: 4 networks x 3 budgets
    python bench/oracle.py --networks mobilenet_v3_small@96 --factors 0.8 \\
        --specs none,ptq-int8,ptq-dynamic,prune:0.5 --time-cap 5      # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

NETWORKS = ("mobilenet_v2@96", "mobilenet_v3_small@96", "efficientnet_b0@96", "mobilenet@128")
FACTORS = (0.5, 0.8, 1.2)
#: The oracle's candidates: every single technique and the common combinations ('none' first).
SUBSET = (
    "none", "ptq-dynamic", "ptq-float16", "ptq-int8", "qat-int8",
    "prune:0.3", "prune:0.5", "prune:0.7", "prune:0.8", "prune:0.9", "prune-2:4",
    "cluster:8", "cluster:16", "cluster:32", "cluster:64",
    "prune:0.5+ptq-int8", "prune:0.8+ptq-int8", "prune-2:4+ptq-int8", "prune:0.5+ptq-dynamic",
    "cluster:16+ptq-int8", "cluster:16+ptq-dynamic", "prune:0.8+cluster:16+ptq-int8",
)


def check_specs(specs: list[str]) -> list[str]:
    """Canonical specs, 'none' first, each one of the advisor's candidates."""
    from advisor.candidates import candidate_specs
    from advisor.techniques import Pipeline

    canon = [Pipeline.parse(s).spec for s in specs]
    unknown = [s for s in canon if s not in candidate_specs()]
    if unknown:
        raise SystemExit(f"not among the advisor's candidates: {', '.join(unknown)}")
    return ["none"] + [s for s in dict.fromkeys(canon) if s != "none"]


def measured_values(outcome) -> dict[str, float] | None:
    """Target -> measured value of one candidate (None if it failed to apply or convert)."""
    if isinstance(outcome, BaseException):
        return None
    row = outcome.row
    out = {"latency_ms": float(row["latency_ms_median"]), "size_mb": row["size_bytes"] / 1e6}
    if row.get("energy_mj") is not None:
        out["energy_mj"] = float(row["energy_mj"])
    if row.get("technique") == "none" and row.get("top1") is not None:
        out["accuracy_delta_pp"] = 0.0
    elif row.get("accuracy_delta_pp") is not None:
        out["accuracy_delta_pp"] = float(row["accuracy_delta_pp"])
    return out


def as_bands(specs: list[str], values: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """Measured values as zero-width p10/p50/p90 bands, for targets every candidate has."""
    targets = set.intersection(*(set(values[s]) for s in specs))
    return {t: np.repeat(np.array([[values[s][t]] for s in specs]), 3, axis=1) for t in sorted(targets)}


# A user's installed package has its bytecode compiled (pip writes it, or the first run does); a shell
# that forbids writing it would make every cold answer compile the sources again.
_ANSWER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
_warmed: set[str] = set()


def cold_answer(network: str, budget_ms: float, objective: str, bundle: str | None) -> tuple[float, dict]:
    """Wall time and JSON of one cold `advisor recommend` process (over all candidates).

    The first call runs once unrecorded, as `bench/answer_speed.py` does: bytecode written, files cached.
    """
    entry = str(Path(sys.executable).parent / "advisor")
    argv = [entry, "recommend", "--model", network, "--budget-ms", f"{budget_ms:.6g}", "--objective", objective,
            "--json"] + (["--bundle", bundle] if bundle else [])
    if network not in _warmed:
        subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=_ANSWER_ENV)
        _warmed.add(network)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=_ANSWER_ENV)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"advisor recommend failed: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def run_network(network: str, specs: list[str], args, adv, device) -> dict:
    from advisor.api import profile_for
    from advisor.lookup import device_fingerprint
    from advisor.recommend import Constraints, decide
    from measure.runner import MeasureSettings, measure_many

    name, _, size = network.partition("@")
    settings = MeasureSettings(input_size=int(size) if size else None, threads=args.threads, dataset=args.data,
                               pretrain_epochs=args.pretrain_epochs, time_cap_s=args.time_cap)

    def say(msg: str) -> None:
        print(f"  [{network}] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    outcomes = measure_many(name, specs, device, settings, say)
    oracle_s = time.perf_counter() - start
    if args.store:
        from advisor.store import Store

        for o in outcomes:
            if not isinstance(o, BaseException):
                o.save(Store(args.store))
    values = {s: v for s, o in zip(specs, outcomes) if (v := measured_values(o)) is not None}
    failed = {s: str(o) for s, o in zip(specs, outcomes) if isinstance(o, BaseException)}
    if "none" not in values:
        raise SystemExit(f"{network}: the baseline itself failed")
    ok_specs = [s for s in specs if s in values]
    truth = as_bands(ok_specs, values)
    if args.objective == "accuracy" and "accuracy_delta_pp" not in truth:
        raise SystemExit("--objective accuracy needs measured accuracy: pass --data (and --pretrain-epochs)")
    base_ms = values["none"]["latency_ms"]

    profile = profile_for(network)
    fp, _ = device_fingerprint(args.device, adv.bundle.predictor)
    results = []
    for factor in args.factors:
        budget = factor * base_ms
        limits = {"budget_ms": budget}
        if args.max_accuracy_drop is not None:
            limits["max_accuracy_drop"] = args.max_accuracy_drop
        constraints = Constraints(**limits, objective=args.objective, confidence=args.confidence)
        t = time.perf_counter()
        pred = adv.score(profile, specs, fp, args.threads)
        verdict = decide(specs, pred, constraints)
        advisor_s = time.perf_counter() - t
        oracle = decide(ok_specs, truth, constraints)
        cold_s, full = cold_answer(network, budget, args.objective, args.bundle)

        choice = specs[verdict["choice"]] if verdict["decision"] != "infeasible" else None
        best = ok_specs[oracle["choice"]] if oracle["decision"] != "infeasible" else None
        got = values.get(choice) if choice else None
        meets = None
        if choice is not None:
            meets = bool(got is not None and got["latency_ms"] <= budget
                         and (args.max_accuracy_drop is None or "accuracy_delta_pp" not in got
                              or got["accuracy_delta_pp"] >= -args.max_accuracy_drop))
        regret = None
        if meets and best is not None:
            if args.objective == "accuracy":
                regret = {"accuracy_pp": values[best]["accuracy_delta_pp"] - got["accuracy_delta_pp"]}
            else:
                target = {"latency": "latency_ms", "size": "size_mb", "energy": "energy_mj"}[args.objective]
                if target in got and target in values[best]:
                    regret = {target: got[target] - values[best][target],
                              "relative": got[target] / values[best][target] - 1}
        results.append({
            "network": network, "factor": factor, "budget_ms": budget, "baseline_ms": base_ms,
            "advisor": {"decision": verdict["decision"], "choice": choice,
                        "nearest": specs[verdict["choice"]] if choice is None else None,
                        "predicted_ms": {k: float(pred["latency_ms"][verdict["choice"], j])
                                         for j, k in enumerate(("p10", "p50", "p90"))},
                        "baseline_predicted_ms": {k: float(pred["latency_ms"][0, j])
                                                  for j, k in enumerate(("p10", "p50", "p90"))},
                        "measured": got, "meets_when_measured": meets,
                        "full_set_decision": full["decision"], "full_set_choice": full["technique"]},
            "oracle": {"decision": oracle["decision"], "choice": best,
                       "measured": values.get(best) if best else None},
            "nearest_measured_ms": (values[specs[verdict["choice"]]]["latency_ms"]
                                    if choice is None and specs[verdict["choice"]] in values else None),
            "regret": regret, "same_decision": verdict["decision"] == oracle["decision"],
            "same_choice": choice == best,
            "time_s": {"oracle_measuring": oracle_s, "advisor_in_process": advisor_s, "advisor_cold": cold_s},
            "speed_ratio_cold": oracle_s / cold_s, "speed_ratio_in_process": oracle_s / advisor_s,
        })
    return {"network": network, "measured": values, "failed": failed, "oracle_s": oracle_s, "results": results}


def _fmt_choice(decision: str, choice: str | None) -> str:
    return {"keep": "keep", "infeasible": "infeasible"}.get(decision, choice or "?")


def report(runs: list[dict], specs: list[str], args, fp: dict, when: str) -> str:
    results = [r for run in runs for r in run["results"]]
    answered = [r for r in results if r["advisor"]["meets_when_measured"] is not None]
    met = [r for r in answered if r["advisor"]["meets_when_measured"]]
    missed = [r for r in results
              if r["advisor"]["decision"] == "infeasible" and r["oracle"]["decision"] != "infeasible"]
    regret_key = "accuracy_pp" if args.objective == "accuracy" else "relative"
    regrets = [r["regret"][regret_key] for r in results if r["regret"]]
    ratios = [r["speed_ratio_cold"] for r in results]
    cold_median = statistics.median([r["time_s"]["advisor_cold"] for r in results])
    lines = [
        "# The advisor against the oracle",
        "",
        f"Machine: {fp.get('cpu_model')}, {fp.get('logical_cpus')} logical CPUs ({fp.get('machine')}); {when}; "
        f"{args.threads} thread(s); objective {args.objective}; confidence {args.confidence:g}; "
        f"timing cap {args.time_cap:g} s per network; bundle {args.bundle or 'models/current'}.",
        f"Candidates ({len(specs)}): {', '.join(specs)}.",
        f"Reproduce: `.venv/bin/python bench/oracle.py {' '.join(sys.argv[1:])}`".rstrip() + "",
        "",
        "| network | budget | oracle | advisor | predicted p50 [p90] | measured | meets | regret | same | "
        "oracle s | advisor cold s | speed × |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, o = r["advisor"], r["oracle"]
        got = a["measured"]
        measured = f"{got['latency_ms']:.3g} ms" if got else ("failed to apply" if a["choice"] else "-")
        p = a["predicted_ms"]
        predicted = f"{p['p50']:.3g} [{p['p90']:.3g}] ms"
        shown = _fmt_choice(a["decision"], a["choice"])
        if a["decision"] == "infeasible":
            shown += f" (nearest {a['nearest']})"
            measured = (f"{r['nearest_measured_ms']:.3g} ms" if r.get("nearest_measured_ms") is not None else "-")
        if r["regret"]:
            regret = (f"{r['regret']['accuracy_pp']:+.2f} pp" if args.objective == "accuracy"
                      else f"{r['regret']['relative'] * 100:+.1f}%")
        else:
            regret = "-"
        meets = {True: "yes", False: "NO", None: "-"}[a["meets_when_measured"]]
        lines.append(
            f"| {r['network']} | {r['budget_ms']:.3g} ms ({r['factor']:g}× base {r['baseline_ms']:.3g}) | "
            f"{_fmt_choice(o['decision'], o['choice'])} | {shown} | {predicted} | {measured} | "
            f"{meets} | {regret} | {'yes' if r['same_choice'] else 'no'} | {r['time_s']['oracle_measuring']:.0f} | "
            f"{r['time_s']['advisor_cold']:.2f} | {r['speed_ratio_cold']:,.0f} |")
    lines += [
        "",
        f"- The advisor's choice met the budget when measured: {len(met)} of {len(answered)} answers that "
        f"promised a plan" + (f" ({len(met) / len(answered):.0%})" if answered else ""),
        f"- The advisor said infeasible where the oracle found a plan: {len(missed)} of {len(results)}",
        f"- Same decision as the oracle: {sum(r['same_decision'] for r in results)} of {len(results)}; "
        f"same plan: {sum(r['same_choice'] for r in results)} of {len(results)}",
        "- Regret (the advisor's choice against the oracle's, both measured, where the advisor's met the budget): "
        + (f"median {statistics.median(regrets) * (1 if args.objective == 'accuracy' else 100):+.2f}"
           f"{' pp' if args.objective == 'accuracy' else '%'}, worst "
           f"{max(regrets) * (1 if args.objective == 'accuracy' else 100):+.2f}"
           f"{' pp' if args.objective == 'accuracy' else '%'}" if regrets else "n/a"),
        "- Speed: the oracle measured for " + ", ".join(f"{run['oracle_s']:.0f} s ({run['network']})" for run in runs)
        + f"; a cold `advisor recommend` answers in {cold_median:.2f} s (median), "
        f"{statistics.median([r['time_s']['advisor_in_process'] for r in results]) * 1e3:.1f} ms "
        f"in-process: the advisor is {statistics.median(ratios):,.0f}× faster (median, cold).",
    ]
    from advisor.candidates import candidate_specs

    weighed = len(candidate_specs())
    per_candidate = statistics.median([run["oracle_s"] / max(len(run["measured"]) + len(run["failed"]), 1)
                                       for run in runs])
    lines.append(
        f"- Like for like: each cold answer weighed all {weighed} candidates, the oracle measured {len(specs)}. "
        f"At the oracle's median pace here ({per_candidate:.0f} s a candidate), measuring the {weighed} would "
        f"take about {weighed * per_candidate / 3600:.1f} h, {weighed * per_candidate / cold_median:,.0f}× the "
        "cold answer: an extrapolation, and a low one, since the plans left out of the oracle's subset include "
        "quantization-aware training and distillation, which fine-tune for minutes.")
    lines.append("- Uncompressed latency, predicted p50 [p10–p90] against measured: " + "; ".join(
        f"{run['network']} {b['p50']:.3g} [{b['p10']:.3g}–{b['p90']:.3g}] ms against "
        f"{run['measured']['none']['latency_ms']:.3g} ms"
        for run in runs if run["results"] for b in [run["results"][0]["advisor"]["baseline_predicted_ms"]]))
    failed = {f"{run['network']} {s}": e for run in runs for s, e in run["failed"].items()}
    if failed:
        lines += ["", "Candidates that failed to apply (excluded from the oracle's choice):", ""]
        lines += [f"- {k}: {v[:200]}" for k, v in failed.items()]
    lines += ["", "Full candidate set: what `advisor recommend` (all candidates) chose for the same question:", ""]
    lines += [f"- {r['network']} @ {r['budget_ms']:.3g} ms: "
              f"{_fmt_choice(r['advisor']['full_set_decision'], r['advisor']['full_set_choice'])}" for r in results]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated NAME@SIZE")
    ap.add_argument("--factors", default=",".join(map(str, FACTORS)), help="budgets as multiples of the measured "
                    "baseline latency")
    ap.add_argument("--specs", default=",".join(SUBSET), help="the candidate subset ('none' is always added)")
    ap.add_argument("--objective", default="latency", choices=("latency", "accuracy", "size", "energy"))
    ap.add_argument("--max-accuracy-drop", type=float, default=None, help="also constrain accuracy (needs --data)")
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-cap", type=float, default=30.0, help="seconds of timing per network at most")
    ap.add_argument("--data", default=None, help="dataset for measured accuracy (e.g. cifar10)")
    ap.add_argument("--pretrain-epochs", type=int, default=0)
    ap.add_argument("--device", default="local")
    ap.add_argument("--bundle", default=None, help="bundle folder (default models/current)")
    ap.add_argument("--store", default=None, help="also append the oracle's measured rows to this store")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "oracle.md")
    args = ap.parse_args()
    args.factors = [float(f) for f in args.factors.split(",")]
    if any(not (f > 0 and math.isfinite(f)) for f in args.factors):
        raise SystemExit("--factors must be positive numbers")

    from advisor.api import Advisor
    from advisor.fingerprint import collect_fingerprint
    from measure.devices import get_device

    specs = check_specs(args.specs.split(","))
    adv = Advisor.load(args.bundle)
    device = get_device(args.device)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = []
    for network in args.networks.split(","):
        print(f"{network}: measuring {len(specs)} candidates", file=sys.stderr, flush=True)
        runs.append(run_network(network, specs, args, adv, device))
    text = report(runs, specs, args, collect_fingerprint(), when)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"when": when, "args": {k: (str(v) if isinstance(v, Path)
                                                                                    else v)
                                                                                for k, v in vars(args).items()},
                                                         "runs": runs}, indent=1, default=str))
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
