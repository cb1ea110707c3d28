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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PlanBatch:
    """The plans one answer scores: those asked, then the parts their composition needs.

    Build it with `PlanBatch.of(specs)`, predict every plan of `plans` in one batch, and pass the
    predictions to `compose`.
    """

    plans: tuple[str, ...]  # the plans asked, then the prefixes and quantizers alone they lack
    asked: int  # how many of `plans` were asked
    parts: tuple[tuple[int, int, int], ...]  # (row asked, its prefix's row, its quantizer's row)

    @classmethod
    def of(cls, specs: Sequence[str]) -> PlanBatch:
        """The batch for `specs` (each a plan spec)."""
        plans = [str(s) for s in specs]
        row = {s: i for i, s in reversed(list(enumerate(plans)))}  # a plan asked twice: its first row
        parts = []
        for i, spec in enumerate(list(plans)):
            split = post_training_split(spec)
            if split is None:
                continue
            for part in split:
                if part not in row:
                    row[part] = len(plans)
                    plans.append(part)
            parts.append((i, row[split[0]], row[split[1]]))
        return cls(tuple(plans), len(specs), tuple(parts))

    def compose(self, pred: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`{target: (asked, 3)}` from predictions for every plan of the batch: each target as given,
        but a split plan's accuracy change is the composed one wherever its median is lower."""
        out = {name: np.asarray(q, dtype=np.float64)[: self.asked].copy() for name, q in pred.items()}
        if ACCURACY not in pred:
            return out
        acc = np.asarray(pred[ACCURACY], dtype=np.float64)
        for i, p, q in self.parts:
            a, b = acc[p], acc[q]
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                continue
            mid = a[1] + b[1]
            if not mid < acc[i, 1]:
                continue
            lo = mid - np.hypot(a[1] - a[0], b[1] - b[0])
            hi = mid + np.hypot(a[2] - a[1], b[2] - b[1])
            out[ACCURACY][i] = (lo, mid, hi)
        return out
