"""Benchmark: how well does a measured accuracy change repeat when the whole pipeline runs again?

The predictor is scored on `accuracy_delta_pp`, the compressed network's top-1 minus its fair
reference's, in points. For the small networks of `plans/accuracy.toml` that label is one draw: the
network is initialised, trained for a few epochs, compressed and fine-tuned once. Run with another
`seed` (`plans/accuracy-seed1.toml`), the same architecture, dataset and plan are initialised,
trained and fine-tuned anew on other splits. The spread between the two draws bounds what any
predictor can score on this label: if two draws differ by d on average, a predictor that knew the
expected change exactly would still be off by about d/sqrt(2) on average (for normal draws,
E|X - mu| = E|X1 - X2| / sqrt(2)).

It only reads the store: rows are paired when everything that makes a configuration distinct
(model, technique, the settings key) is the same except the seed; pairs of one seed measured on
two machines are reported apart.

    advisor campaign plans/accuracy-seed1.toml --store training_data     # the second draw
    python bench/accuracy_repeat.py                                       # compare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import publish  # noqa: E402

#: Settings that do not make two draws different configurations for this comparison. The sample
#: order is one of them: another seed shuffles the splits anew, and rows from before the fixed-seed
#: order took their file's order, one more draw (class-sorted files excepted: those rows are dropped).
NOT_PAIRED_ON = ("seed", "policy", "data_order")


def _pair_key(row) -> str:
    settings = {k: v for k, v in json.loads(row["settings_json"]).items() if k not in NOT_PAIRED_ON}
    return json.dumps([row["model"], row["technique"], settings], sort_keys=True)


def pairs(rows):
    """One row per (configuration, other seed): the seed-0 draw and the other draw side by side.

    Returns:
        (other_seed, same_seed) DataFrames with columns `key`, `dataset`, `technique`, `model`,
        `delta_a`, `delta_b`, `top1_ref_a`, `top1_ref_b`, `device_a`, `device_b`.
    """
    from advisor.predictor import class_sorted_finetune_rows

    acc = rows[(rows["status"] == "ok") & (rows["source"] == "measured") & rows["accuracy_delta_pp"].notna()
               & (rows["technique"] != "none") & ~class_sorted_finetune_rows(rows)].copy()
    acc["seed"] = [int(json.loads(s).get("seed") or 0) for s in acc["settings_json"]]
    acc["key"] = [_pair_key(r) for _, r in acc.iterrows()]
    # The reference each change is taken against: its top-1 tells how differently the two draws trained.
    acc["top1_ref"] = acc["top1"] - acc["accuracy_delta_pp"] / 100.0
    acc = acc.sort_values("measured_at").drop_duplicates(["key", "seed", "device"], keep="last")
    cols = ["key", "dataset", "technique", "model", "accuracy_delta_pp", "top1_ref", "device", "seed"]
    first = acc[acc["seed"] == 0][cols]
    others = acc[acc["seed"] != 0][cols]
    other_seed = first.merge(others, on=["key", "dataset", "technique", "model"], suffixes=("_a", "_b"))
    same = first.merge(first, on=["key", "dataset", "technique", "model"], suffixes=("_a", "_b"))
    same = same[same["device_a"] < same["device_b"]]
    out = []
    for frame in (other_seed, same):
        frame = frame.rename(columns={"accuracy_delta_pp_a": "delta_a", "accuracy_delta_pp_b": "delta_b"})
        out.append(frame.drop_duplicates(["key", "device_a", "device_b"]).reset_index(drop=True))
    return out[0], out[1]


def _line(label: str, frame) -> dict:
    d = (frame["delta_b"] - frame["delta_a"]).abs().to_numpy(dtype=float)
    ref = (frame["top1_ref_b"] - frame["top1_ref_a"]).abs().to_numpy(dtype=float) * 100
    if d.size == 0:
        return {"what": label, "n": 0}
    return {"what": label, "n": int(d.size), "mean_abs_diff_pp": float(d.mean()),
            "median_abs_diff_pp": float(np.median(d)),
            "within_1pp": float(np.mean(d <= 1.0)), "within_5pp": float(np.mean(d <= 5.0)),
            "floor_mae_pp": float(d.mean() / np.sqrt(2)),
            "mean_abs_change_pp": float(np.mean(np.abs(np.r_[frame["delta_a"], frame["delta_b"]]))),
            "reference_top1_diff_pp": float(ref.mean())}


def compare(rows) -> dict:
    """Score the agreement of the paired draws, overall, by dataset and by technique."""
    other, same = pairs(rows)
    result = {"other_seed": [_line("every pair", other)], "by_dataset": [], "by_technique": [],
              "same_seed_other_machine": [_line("every pair", same)] if len(same) else []}
    for ds in sorted(other["dataset"].astype(str).unique()):
        result["by_dataset"].append(_line(ds, other[other["dataset"].astype(str) == ds]))
    for tech in sorted(other["technique"].astype(str).unique()):
        result["by_technique"].append(_line(tech, other[other["technique"].astype(str) == tech]))
    if len(other):
        result["devices"] = sorted(set(other["device_a"].astype(str)) | set(other["device_b"].astype(str)))
    return result


def _table(lines: list[dict]) -> list[str]:
    out = ["| pairs | n | mean abs. difference | median | within 1 pp | within 5 pp | MAE floor (mean/√2) "
           "| mean abs. change | reference top-1 difference |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in lines:
        if not r["n"]:
            continue
        out.append(f"| {r['what']} | {r['n']} | {r['mean_abs_diff_pp']:.2f} pp | {r['median_abs_diff_pp']:.2f} pp | "
                   f"{100 * r['within_1pp']:.0f}% | {100 * r['within_5pp']:.0f}% | {r['floor_mae_pp']:.2f} pp | "
                   f"{r['mean_abs_change_pp']:.2f} pp | {r['reference_top1_diff_pp']:.2f} pp |")
    return out


def report(result: dict, store: str) -> str:
    """The markdown report of `compare`'s result."""
    lines = ["# The accuracy change drawn twice (seed 0 and another seed)", "",
             f"Store `{store}`; devices {', '.join(result.get('devices', []))}. Command: "
             "`python bench/accuracy_repeat.py`. A pair is one architecture, dataset and plan, initialised, trained, "
             "compressed and fine-tuned twice; the columns compare their `accuracy_delta_pp`.", "",
             *_table(result["other_seed"]), "", "By dataset:", "", *_table(result["by_dataset"]), "",
             "By technique:", "", *_table(result["by_technique"]), ""]
    if result["same_seed_other_machine"]:
        lines += ["The same seed measured on two machines:", "", *_table(result["same_seed_other_machine"]), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "training_data"), help="the dataset holding both draws")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy_repeat.md"))
    args = ap.parse_args()
    from advisor.store import Store

    result = compare(Store(args.store).read())
    if not result["other_seed"][0]["n"]:
        raise SystemExit("no configuration has rows of two seeds: run plans/accuracy-seed1.toml first")
    publish(report(result, args.store), args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
