"""A plan's accuracy change is no better than its parts say: post-training quantization after a
step that fine-tunes (distillation, low rank, pruning, clustering, QAT) is composed from the two.

The accuracy trees read only the technique's features, and a combination no accuracy row had
falls where the trees split: `distill:0.5+ptq-float16` landed in the float16 branch, where every
row lost nothing, and came out at -0.00 pp while `distill:0.5` alone came out at -9.2 and
`distill:0.5+ptq-int8` at -9.7 (bundle 20261207T122634Z-a12f2ee4). A post-training quantizer
fine-tunes nothing, so it cannot win back what the step before it lost: the plan's change is
taken as the prefix's plus the quantizer's alone (medians add; the distances to p10 and p90 add in
quadrature), wherever that is lower than the trees' own answer for the whole plan.

Numpy only (the answer path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from advisor.techniques import Pipeline

#: The name the bundle gives the accuracy target.
ACCURACY = "accuracy_delta"


def post_training_split(spec: str) -> tuple[str, str] | None:
    """(prefix, suffix) of a plan that ends in post-training quantization after a step that
    fine-tunes, e.g. `distill:0.5+ptq-dynamic` -> (`distill:0.5`, `ptq-dynamic`); None for any
    other plan (no such suffix, or nothing before it that trains)."""
    steps = list(Pipeline.parse(spec).steps)
    k = len(steps)
    while k > 0 and steps[k - 1].kind == "quantize" and not steps[k - 1].needs_finetune:
        k -= 1
    if k == len(steps) or not any(s.needs_finetune for s in steps[:k]):
        return None
    return "+".join(s.spec for s in steps[:k]), "+".join(s.spec for s in steps[k:])


def predict_plans(specs: Sequence[str], predict: Callable[[list[str]], Mapping[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """Predictions for `specs` with composed accuracy changes.

    Args:
        specs: the plans asked about.
        predict: predicts `{target: (m, 3) p10/p50/p90}` for a list of plans (in the bundle's
            target names and units); it is called once, with `specs` followed by the prefixes and
            suffixes that the composition needs and `specs` does not hold.

    Returns:
        `{target: (len(specs), 3)}`: every target as `predict` gave it, but the accuracy change of
        a plan `post_training_split` splits is the composed one wherever its median is lower.
    """
    specs = [str(s) for s in specs]
    splits = [post_training_split(s) for s in specs]
    extra = list(dict.fromkeys(p for sp in splits if sp for p in sp if p not in specs))
    everything = specs + extra
    pred = {name: np.asarray(q, dtype=np.float64) for name, q in predict(everything).items()}
    out = {name: q[: len(specs)].copy() for name, q in pred.items()}
    acc = pred.get(ACCURACY)
    if acc is None:
        return out
    row = {s: i for i, s in reversed(list(enumerate(everything)))}
    for i, sp in enumerate(splits):
        if sp is None:
            continue
        a, b = acc[row[sp[0]]], acc[row[sp[1]]]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        mid = a[1] + b[1]
        if not mid < acc[i, 1]:
            continue
        lo = mid - np.hypot(a[1] - a[0], b[1] - b[0])
        hi = mid + np.hypot(a[2] - a[1], b[2] - b[1])
        out[ACCURACY][i] = (lo, mid, hi)
    return out
