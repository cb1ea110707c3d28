"""Benchmark: does a post-training quantizer add to a fine-tuned step's accuracy change what it adds alone?

`advisor/composition.py` predicts a plan such as `prune:0.8+ptq-int8` to lose at least its prefix's
change plus the quantizer's alone. This checks that rule on measurements only, no model: for every
network whose store holds the prefix, the quantizer alone and the whole plan under the same
settings on the same device, it compares the measured whole with the measured sum.

    python bench/accuracy_additivity.py            # reads training_data, writes bench/results/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import publish  # noqa: E402

#: Settings that differ between a plan and its parts by construction (fine-tuning or not).
NOT_MATCHED_ON = ("policy", "finetune", "finetune_epochs")


def triples(rows):
    """One row per measured (prefix, quantizer alone, whole plan) on one network and device."""
    import pandas as pd

    from advisor.composition import post_training_split
    from advisor.predictor import class_sorted_finetune_rows

    acc = rows[(rows["status"] == "ok") & (rows["source"] == "measured") & rows["accuracy_delta_pp"].notna()
               & ~class_sorted_finetune_rows(rows)]

    def key(s: str) -> str:
        return json.dumps({k: v for k, v in json.loads(s).items() if k not in NOT_MATCHED_ON}, sort_keys=True)

    found = {(m, t, d, key(s)): v for m, t, d, s, v in zip(acc["model"], acc["technique"], acc["device"],
                                                            acc["settings_json"], acc["accuracy_delta_pp"])}
    out = []
    for (model, plan, device, k), whole in found.items():
        split = post_training_split(plan)
        if split is None:
            continue
        prefix, alone = found.get((model, split[0], device, k)), found.get((model, split[1], device, k))
        if prefix is not None and alone is not None:
            out.append({"plan": plan, "model": model, "device": device, "whole": whole, "prefix": prefix,
                        "quantizer_alone": alone})
    return pd.DataFrame(out, columns=["plan", "model", "device", "whole", "prefix", "quantizer_alone"])


def report(t) -> str:
    """The markdown table: per plan, how far the measured whole lies from the measured sum."""
    t = t.assign(err=t["whole"] - (t["prefix"] + t["quantizer_alone"]))
    lines = ["# A post-training quantizer after a fine-tuned step: measured whole against measured parts", "",
             "Command: `python bench/accuracy_additivity.py`. Each row: networks whose prefix, quantizer alone and "
             "whole plan were all measured (same settings and device); error = whole − (prefix + quantizer alone).",
             "", "| plan | n | mean error | mean abs. error | mean whole | mean prefix |",
             "|---|---:|---:|---:|---:|---:|"]
    for plan, g in t.groupby("plan"):
        lines.append(f"| `{plan}` | {len(g)} | {g['err'].mean():+.2f} pp | {g['err'].abs().mean():.2f} pp | "
                     f"{g['whole'].mean():+.2f} pp | {g['prefix'].mean():+.2f} pp |")
    lines.append(f"| every plan | {len(t)} | {t['err'].mean():+.2f} pp | {t['err'].abs().mean():.2f} pp | "
                 f"{t['whole'].mean():+.2f} pp | {t['prefix'].mean():+.2f} pp |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(ROOT / "training_data"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy_additivity.md"))
    args = ap.parse_args()
    from advisor.store import Store

    t = triples(Store(args.store).read())
    if t.empty:
        raise SystemExit("no network has its prefix, quantizer alone and whole plan measured")
    publish(report(t), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
