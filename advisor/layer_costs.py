"""Per-layer latency: a learned, non-linear cost for each layer, summed over the network.

nn-Meter's route to accurate latency on unseen networks is to predict each kernel and sum. The
rows here time whole networks, not layers, so the per-layer model is learned through the sum:
each executed layer (a "unit"; a separable convolution is two, and one more unit stands for the
interpreter's fixed cost per invoke) starts from its share of the linear kernel-sum prior
(`advisor.predictor.Prior`: a cost per MAC, per op and per element of its group, and per
iteration of a looped recurrent layer, per machine and thread count), and an XGBoost model learns
a multiplicative correction from the layer's own shape: its type, MACs, parameters, elements read
and written, kernel, stride, channels, groups and output positions, and the device. A network's
baseline latency is

    sum over units u of  prior_cost(u) * exp(f(u))

and f is fitted so that this sum matches each measured network (a custom objective on log
latency: the gradient of a unit is the network's log error times the unit's share of the
network's time). The linear prior cannot say that a 24-channel 1x1 convolution at 56x56 runs at a
third of the speed of a 256-channel one, or that a depthwise layer's cost per MAC falls with its
width; the trees can, and a new network is a new arrangement of layer shapes they have seen.

Held out by family (5 folds, 2026-12-05, 1,027 baseline rows from three x86 machines, priors
alone, before the residual trees of `advisor.predictor`): within 10% of the measured latency 28.0%
of rows against 14.6% for the linear prior, within 25% 54.5% against 42.4% (with a fixed 400
rounds instead of rounds chosen on held-out families, three fold seeds gave 32-41% against
16-21%). The speed-ups (`LayerSpeedups`), on 1,425 held-out compressed rows: ratios within 10%
54.7% against 44.4% for the per-group `RatioPrior`, within 25% 74.9% against 60.6%.

A row finds its layers through `features.profile_of` (the profile its profile block was computed
from in this process); a row without them (only total MACs known) keeps the linear prior. The
trees are evaluated with numpy (`advisor.trees.Forest`); xgboost is needed only to fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from advisor import features as F
from advisor.profile import ModelProfile
from advisor.trees import Forest

if TYPE_CHECKING:
    from advisor.predictor import Prior
    from advisor.techniques import Pipeline

#: The name of this model's booster in a bundle (`<name>.json`) and in `Predictor.boosters_`.
NAME = "latency_layers"
DOC = "log(layer time / its share of the kernel-sum prior), per layer, fitted through network sums"

#: Keras layer types with a column of their own; any other type has all of them 0 (its group
#: still says what kind of work it is). "pointwise" is a separable convolution's second half,
#: "invoke" the fixed cost of one inference.
UNIT_TYPES = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", F.POINTWISE, "Dense", "EinsumDense",
              "LSTM", "GRU", "MultiHeadAttention", "Embedding", "PositionEmbedding", "LayerNormalization",
              "Activation", "Add", "Multiply", "Concatenate", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
              "AveragePooling2D", "MaxPooling2D", "ZeroPadding2D", "TFOpLambda", "Softmax", "BatchNormalization",
              "Conv2DTranspose", "UpSampling2D", "LeakyReLU", "PReLU", "ELU", "GlobalMaxPooling2D", "Rescaling",
              "Subtract", "Maximum", "Cropping2D", "invoke")
_TYPE_INDEX = {t: i for i, t in enumerate(UNIT_TYPES)}
_SHAPE_NAMES = ("log_macs", "log_params", "log_written", "log_read", "kernel", "stride", "c_in", "c_out",
                "log_positions", "macs_per_output", "groups", "log_steps")
#: The device columns the trees see (thread_share and memory are left out: neither sets a
#: kernel's speed).
DEVICE_COLUMNS = tuple(n for n in F.DEVICE_NAMES if n not in ("thread_share", "memory_gib"))
#: The trees' input schema, in order.
UNIT_FEATURES = (*(f"group_{g}" for g in F.GROUPS), *(f"type_{t}" for t in UNIT_TYPES), *_SHAPE_NAMES,
                 *DEVICE_COLUMNS)
#: The numeric steps a unit's speed-up is learned from (technique block columns; whole-model
#: values: a layer-wise plan's coverage shares say how much of the network they reach).
STEP_SETTINGS = ("n_steps", "quant_dynamic", "quant_float16", "quant_full_int", "quant_aware", "density",
                "structured", "eff_weight_bits", "eff_act_bits", "cluster_bits", "cover_prune", "cover_quantize")
RATIO_FEATURES = (*UNIT_FEATURES, *STEP_SETTINGS)
#: The speed-up model's booster name, and its doc on the card.
RATIO_NAME = "latency_layer_ratio"
RATIO_DOC = "log(a layer's time under the numeric steps / its baseline time), fitted through measured ratios"
#: Every per-layer booster a bundle may hold: name -> (its input schema, its doc).
BOOSTERS: dict[str, tuple[tuple[str, ...], str]] = {NAME: (UNIT_FEATURES, DOC), RATIO_NAME: (RATIO_FEATURES, RATIO_DOC)}
_N_GROUPS, _N_TYPES, _N_SHAPE = len(F.GROUPS), len(UNIT_TYPES), len(_SHAPE_NAMES)
_DEVICE_INDEX = np.array([F.INDEX[n] for n in DEVICE_COLUMNS])
_STEP_INDEX = np.array([F.INDEX[n] for n in STEP_SETTINGS])


@dataclass(frozen=True)
class Units:
    """A network's executed layers as the prior and the trees see them.

    Attributes:
        group: per unit, its index in `features.GROUPS`.
        work: per unit, (prior work column value, elements written, elements read): what the
            linear prior's per-group MAC, per-element-written and per-element-read costs multiply.
        invoke: per unit, True for the one unit that stands for the fixed cost.
        shape: per unit, the group and type one-hot columns and `_SHAPE_NAMES`.
        ops: per unit, the TFLite operators it becomes (0 for the invoke).
        layer: per unit, its layer's name.
    """

    group: np.ndarray
    work: np.ndarray
    invoke: np.ndarray
    shape: np.ndarray
    #: per unit, the TFLite operators it becomes (`features.unit_ops`): its count in the prior's per-op work
    ops: np.ndarray
    #: per unit, its loop iterations (`features.loop_steps`, columns `features.LOOP_STEP_NAMES`)
    steps: np.ndarray
    #: per unit, the name of its layer ("" for the invoke): a layer-wise plan's steps take layers by name
    layer: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.group)


def units(profile: ModelProfile) -> Units:
    """The units of a network: `features.executed_units` (the same kernels the per-group work
    features count, so that the prior's per-unit costs sum to its whole-network value), and one
    more for the fixed cost of an invoke."""
    executed = list(F.executed_units(profile))
    n = len(executed) + 1
    shape = np.zeros((n, _N_GROUPS + _N_TYPES + _N_SHAPE))
    group = np.full(n, F.GROUPS.index("other"), dtype=np.int64)
    work = np.zeros((n, 3))
    for i, u in enumerate(executed):
        group[i] = F.GROUPS.index(u.group)
        work[i] = (u.padded, u.written, u.read)
        if u.type in _TYPE_INDEX:
            shape[i, _N_GROUPS + _TYPE_INDEX[u.type]] = 1.0
        positions = u.written / u.c_out if u.c_out else 0.0
        shape[i, _N_GROUPS + _N_TYPES:] = (math.log1p(u.macs), math.log1p(u.params), math.log1p(u.written),
                                           math.log1p(u.read), u.layer.kernel, u.layer.stride, u.c_in, u.c_out,
                                           math.log1p(positions), u.macs / max(u.written, 1.0),
                                           _conv_groups(u), math.log1p(_loop_steps(u)))
    shape[np.arange(n), group] = 1.0
    shape[-1, _N_GROUPS + _TYPE_INDEX["invoke"]] = 1.0
    invoke = np.zeros(n, dtype=bool)
    invoke[-1] = True
    ops = np.array([x.ops for x in executed] + [0], dtype=float)
    steps = np.array([F.loop_steps(x.layer) for x in executed] + [(0.0,) * len(F.LOOP_STEP_NAMES)])
    return Units(group, work, invoke, shape, ops, steps, tuple(x.layer.name for x in executed) + ("",))


def _conv_groups(u: F.Unit) -> float:
    """A convolution's groups (1 for an ordinary one, 0 for layers without them); a depthwise
    layer records its channels there, which its type already says."""
    return float(u.layer.groups) if u.group == "conv" and u.type != F.POINTWISE else 0.0


def _loop_steps(u: F.Unit) -> float:
    """A recurrent layer's loop iterations (its input's time steps; 0 for other layers). Its
    output says nothing of them when it returns only the last state, and each step dispatches the
    loop body's operators again: held out by family, the per-step cost the trees could not see put
    short sequences' GRU networks about 20% too slow and long ones about 20% too fast."""
    if u.group != "recurrent" or not u.layer.input_shapes or len(u.layer.input_shapes[0]) < 2:
        return 0.0
    return float(u.layer.input_shapes[0][0])


_UNITS: dict[str, Units] = {}


def units_of(key: str) -> Units | None:
    """The units of the profile with this block key (`features.profile_keys`), if known here."""
    found = _UNITS.get(key)
    if found is None:
        profile = F.profile_of(key)
        if profile is None:
            return None
        found = _UNITS[key] = units(profile)
        if len(_UNITS) > F._PROFILES_KEPT:
            del _UNITS[next(iter(_UNITS))]
    return found


def prior_unit_costs(prior: Prior, x: np.ndarray, u: Units) -> np.ndarray:
    """Per unit, the linear prior's cost for a network whose feature row is `x` (the coefficient
    set of its machine and threads): these sum to `prior(x)` (before its floor)."""
    s = int(prior.set_index(x[None, :])[0])
    coef = dict(zip(prior.columns, np.asarray(prior.coef)[s]))
    per_mac = np.array([coef.get(f"macs_{g}_padded" if g in F.PADDED_GROUPS else f"macs_{g}", 0.0) for g in F.GROUPS])
    per_op = np.array([coef.get(f"n_{g}", 0.0) for g in F.GROUPS])
    cost = (per_mac[u.group] * u.work[:, 0] + per_op[u.group] * u.ops + coef.get("act_elements", 0.0) * u.work[:, 1]
            + coef.get("act_in", 0.0) * u.work[:, 2]
            + u.steps @ np.array([coef.get(c, 0.0) for c in F.LOOP_STEP_NAMES]))
    cost[u.invoke] = float(np.asarray(prior.intercept)[s])
    return cost


#: A unit's prior cost is never taken below this (ms): a unit the prior thinks free can still be
#: given a time by the trees.
_MIN_UNIT_MS = 1e-6


def unit_matrix(u: Units, x: np.ndarray) -> np.ndarray:
    """The trees' input rows (`UNIT_FEATURES`) for the units of one network on one device."""
    return np.hstack([u.shape, np.broadcast_to(x[_DEVICE_INDEX], (len(u), len(DEVICE_COLUMNS)))])


def step_matrix(u: Units, x: np.ndarray, key: str | None = None) -> np.ndarray:
    """The speed-up trees' input rows (`RATIO_FEATURES`): the units, and the numeric steps acting
    on each (`unit_steps`; with no `key`, the pipeline's own settings for every unit)."""
    steps = unit_steps(u, x, key) if key is not None else np.broadcast_to(x[_STEP_INDEX], (len(u), len(STEP_SETTINGS)))
    return np.hstack([unit_matrix(u, x), steps])


#: The technique block's columns in a feature row.
_TECHNIQUE_COLUMNS = np.arange(F.TECHNIQUE_BLOCK.start, F.TECHNIQUE_BLOCK.stop)
#: Where each of `STEP_SETTINGS` sits in the technique block.
_TECHNIQUE_STEP_INDEX = np.array([F.TECHNIQUE_NAMES.index(n) for n in STEP_SETTINGS])


def unit_steps(u: Units, x: np.ndarray, key: str) -> np.ndarray:
    """Per unit, the numeric step settings (`STEP_SETTINGS`) that act on it.

    For a whole-model plan every unit has the row's own. For a layer-wise plan (one this process
    featurised: `features.layerwise_plan_of`), each weighted layer has the settings of the steps
    that take it, as if they took the whole model (a layer no step takes: those of `none`), so the
    trees see that `prune:0.9@large` prunes the big dense layer and leaves the stem alone; units
    without weights (element-wise, pooling, the invoke) keep the plan's averages."""
    row = x[_STEP_INDEX]
    out = np.broadcast_to(row, (len(u), len(STEP_SETTINGS)))
    plan = F.layerwise_plan_of(key, x[F.TECHNIQUE_BLOCK]) if u.layer else None
    if plan is None:
        return out
    per_layer = _layer_settings(*plan)
    out = out.copy()
    for i, name in enumerate(u.layer):
        found = per_layer.get(name)
        if found is not None:
            out[i] = found
    return out


@lru_cache(maxsize=4096)
def _layer_settings(built: ModelProfile, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """Weighted layer name -> the `STEP_SETTINGS` of the numeric steps of `pipeline` that take it."""
    from advisor.layers import assign, weighted

    steps = pipeline.numerics.steps
    taken: dict[str, list[Any]] = {ly.name: [] for ly in weighted(built)}
    for kind in F.LAYERWISE_KINDS:
        mine = [st for st in steps if st.kind == kind]
        if len(mine) == 1 and mine[0].layers == "all":
            for chosen in taken.values():
                chosen.append(mine[0])
        elif mine:
            for name, st in assign(built, mine).items():
                if name in taken:
                    taken[name].append(st)
    out = {}
    for name, chosen in taken.items():
        whole = "+".join(st.spec.split("@")[0] for st in steps if any(st is c for c in chosen)) or "none"
        out[name] = F.technique_vector(whole)[_TECHNIQUE_STEP_INDEX]
    return out


class _Memo(dict):
    """Per-layer results already computed in this process, by (network, device[, steps]): a
    bundle is immutable, so a network scored before is a lookup. Valid for one set of priors
    (`of` empties it when they change); emptied past `_MEMO_ROWS` entries."""

    owners: tuple[Any, ...] = ()

    def of(self, owners: tuple[Any, ...]) -> _Memo:
        if len(owners) != len(self.owners) or any(a is not b for a, b in zip(self.owners, owners)):
            self.clear()
            self.owners = owners
        return self

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= _MEMO_ROWS:
            self.clear()
        self[key] = value
        return value


_MEMO_ROWS = 100_000


def _device_bytes(x: np.ndarray) -> bytes:
    return np.nan_to_num(x[F.DEVICE_BLOCK], nan=-1.0).tobytes()


def _distinct(X: np.ndarray, columns: np.ndarray | None = None) -> dict[tuple[str, bytes], list[int]]:
    """Rows by (network, device[, columns]): what a per-layer sum depends on, computed once each."""
    keys = F.profile_keys(X)
    parts = [np.nan_to_num(X[:, F.DEVICE_BLOCK], nan=-1.0)]
    if columns is not None:
        parts.append(np.nan_to_num(X[:, columns], nan=-1.0))
    rest = np.hstack(parts)
    groups: dict[tuple[str, bytes], list[int]] = {}
    for i, (k, r) in enumerate(zip(keys, rest)):
        groups.setdefault((k, r.tobytes()), []).append(i)
    return groups


@dataclass(frozen=True, eq=False)
class LayerCosts:
    """The fitted per-layer correction: a `Forest` over `UNIT_FEATURES` giving log(time / prior)."""

    forest: Forest
    rows: int
    _memo: _Memo = field(default_factory=lambda: _Memo(), repr=False, compare=False)

    def __call__(self, X: np.ndarray, prior: Prior) -> np.ndarray:
        """Baseline latency (ms) per row of X: the sum of its units' costs, or `prior(X)` for a row
        whose layers are unknown here."""
        out = prior(X)
        if not len(X):
            return out
        # Rows differ mostly in their pipeline; the baseline latency depends on the network and
        # the device only, so each distinct (network, device) is summed once.
        for (key, _), idx in _distinct(X).items():
            u = units_of(key)
            if u is not None:
                out[idx] = float(np.sum(np.exp(self.log_costs(prior, X[idx[0]], key, u))))
        return out

    def log_costs(self, prior: Prior, x: np.ndarray, key: str, u: Units) -> np.ndarray:
        """log ms per unit of one network (`key`, its units `u`) on the device of feature row `x`;
        computed once per network and device (the speed-ups start from them too)."""
        memo = self._memo.of((prior,))
        found = memo.get((key, _device_bytes(x)))
        if found is None:
            base = np.log(np.maximum(prior_unit_costs(prior, x, u), _MIN_UNIT_MS))
            found = memo.put((key, _device_bytes(x)), base + self.forest.predict_distinct(unit_matrix(u, x))[:, 0])
        return found


def _log_unit_costs(priors: Mapping[str, Any], x: np.ndarray, key: str, u: Units) -> np.ndarray:
    """log ms per unit of a baseline network: the per-layer costs where fitted, else the linear
    prior's shares."""
    layers = priors.get(NAME)
    if layers is not None:
        return layers.log_costs(priors["latency"], x, key, u)
    return np.log(np.maximum(prior_unit_costs(priors["latency"], x, u), _MIN_UNIT_MS))


def base_latency(priors: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """The baseline latency prior (ms) per row: per-layer costs where fitted, else the linear prior."""
    layers = priors.get(NAME)
    return layers(X, priors["latency"]) if layers is not None else priors["latency"](X)


@dataclass(frozen=True, eq=False)
class LayerSpeedups:
    """Per-layer speed-ups of numeric steps: a `Forest` over `RATIO_FEATURES` giving log(time
    under the steps / baseline time) for each unit. A pipeline's ratio to its baseline is the
    units' baseline times, each scaled by its speed-up, over their sum: int8 can speed a wide
    convolution up fourfold and slow a hard-swish's element-wise ops down, and the mix follows
    the network's layers."""

    forest: Forest
    rows: int
    _memo: _Memo = field(default_factory=lambda: _Memo(), repr=False, compare=False)

    def __call__(self, X: np.ndarray, priors: Mapping[str, Any]) -> np.ndarray:
        """Latency ratio to the baseline per row (1 for baseline rows); `RatioPrior`'s where a
        row's layers are unknown here."""
        out = priors["latency_ratio"](X, priors["latency"])
        compressed = np.flatnonzero(~F.is_baseline(X))
        if not len(compressed):
            return out
        Xc = X[compressed]
        Xb = F.as_baseline(Xc)
        # Candidates share networks, and the forest tells only so many layer shapes and step
        # settings apart: each distinct (layer, steps) pair, up to the forest's thresholds, is
        # walked once (one forest call), and each pipeline sums its layers' pairs.
        networks: dict[tuple[str, bytes], int] = {}  # (network, device) -> its index below
        unit_rows: list[np.ndarray] = []  # per network: its units' tree inputs
        times: list[np.ndarray] = []  # per network: its units' baseline times
        todo: list[tuple[np.ndarray, int, tuple[str, bytes]]] = []  # (rows, network, memo key)
        steps: list[np.ndarray] = []  # per entry of todo: its step settings
        memo = self._memo.of((priors["latency"], priors.get(NAME)))
        # grouped by the whole technique block: two layer-wise plans can average to the same settings
        for group, idx in _distinct(Xc, _TECHNIQUE_COLUMNS).items():
            rows = compressed[idx]
            if group in memo:
                out[rows] = memo[group]
                continue
            key, xb = group[0], Xb[idx[0]]
            u = units_of(key)
            if u is None:  # RatioPrior's value stays
                memo.put(group, out[rows[0]])
                continue
            if F.layerwise_plan_of(key, Xc[idx[0], F.TECHNIQUE_BLOCK]) is not None:
                # each layer its own steps: no shared step row, walked on its own
                t = np.exp(_log_unit_costs(priors, xb, key, u))
                speedup = np.exp(self.forest.predict_distinct(step_matrix(u, Xc[idx[0]], key))[:, 0])
                out[rows] = memo.put(group, float(np.sum(t * speedup) / max(np.sum(t), 1e-300)))
                continue
            n = networks.setdefault((key, _device_bytes(xb)), len(networks))
            if n == len(unit_rows):
                unit_rows.append(unit_matrix(u, xb))
                times.append(np.exp(_log_unit_costs(priors, xb, key, u)))
            todo.append((rows, n, group))
            steps.append(Xc[idx[0], _STEP_INDEX])
        if not todo:
            return out
        n_unit = len(UNIT_FEATURES)
        all_units = np.vstack(unit_rows)
        u_first, u_code = self.forest.distinct_rows(all_units, np.arange(n_unit))
        starts = np.cumsum([0] + [len(m) for m in unit_rows])
        step_rows = np.vstack(steps)
        s_first, s_code = self.forest.distinct_rows(step_rows, np.arange(n_unit, len(RATIO_FEATURES)))
        n_steps = len(s_first)
        pair_keys = np.concatenate([u_code[starts[n]:starts[n + 1]].astype(np.int64) * n_steps + s_code[j]
                                    for j, (_, n, _) in enumerate(todo)])
        pairs, pair_of = np.unique(pair_keys, return_inverse=True)
        walk = np.hstack([all_units[u_first[pairs // n_steps]], step_rows[s_first[pairs % n_steps]]])
        speedup = np.exp(self.forest.predict(walk, distinct=False)[:, 0])[pair_of.ravel()]  # pairs: distinct
        start = 0
        for rows, n, group in todo:
            t = times[n]
            out[rows] = memo.put(group, float(np.sum(t * speedup[start:start + len(t)]) / max(np.sum(t), 1e-300)))
            start += len(t)
        return out


def latency_ratio(priors: Mapping[str, Any], X: np.ndarray) -> np.ndarray:
    """The ratio prior per row: per-layer speed-ups where fitted, else the per-group `RatioPrior`."""
    speedups = priors.get(RATIO_NAME)
    return speedups(X, priors) if speedups is not None else priors["latency_ratio"](X, priors["latency"])


@dataclass(frozen=True)
class FitSettings:
    """How the per-layer trees are fitted (custom objective; see the module docstring).

    `rounds` is a ceiling: the number used is chosen on held-out groups (`fit`).

    `max_depth` 8: a unit's cost and speed-up depend on its type, shape, quantizer and machine
    together, and shallow trees could not hold the interactions. In `bench/latency_replay.py`'s
    family folds (2026-12-07, 5,548 held-out network latencies, fold seeds 0/1/2) the final median
    was within 10% for 46.8/49.6/48.4% of them at depth 8, against 42.0/43.9/41.9% at depth 5;
    the speed-ups gained most (compressed rows' ratios within 10%: 71.1% against 60.5%, seed 0).
    Depth 7 gave 44.8/47.8/48.8%, depth 9 46.7/49.6/49.6% (with a wider ±25% miss than 8's), 10
    and 12 44.1% and 43.8% (seed 0). Tried on 2026-12-07 and not kept (seed 0, against 46.8%):
    each tree on 80% of the units and 70% of the features, 46.2%; `min_child_weight` 0.1 (a leaf
    holds at least a twentieth of a network's time), 46.7%."""

    rounds: int = 400
    learning_rate: float = 0.1
    max_depth: int = 8
    min_child_weight: float = 1e-3
    reg_lambda: float = 1.0
    min_networks: int = 30
    #: Folds over the groups to choose the number of rounds, and rounds without improvement
    #: before a fold stops.
    validation_folds: int = 3
    patience: int = 40
    #: The trees are kept only where they lower the held-out error by at least this share of the
    #: prior's (on the real rows they lower it by far more: 13.5% -> 46% of networks within 10%).
    min_gain: float = 0.01
    #: Shares of the units each tree sees and of the features each tree may split on (XGBoost's
    #: subsample and colsample_bytree).
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    n_jobs: int = 2
    seed: int = 0


def speedup_settings(settings: FitSettings) -> FitSettings:
    """The speed-up trees' settings: a third of the rounds at three times the rate. Every
    candidate of an answer walks them once per distinct layer shape, so their count is answer
    time; held out by family the ratio prior was as good (54.7% of ratios within 10%, against
    52.4% with 400 rounds at 0.1; 2026-12-05). Depth 10 instead of the cost trees' 8 was tried
    twice in `bench/latency_replay.py`'s family folds (2026-12-07): on 15,793 rows, 47.6/49.4/50.6%
    of network latencies within 10% against 47.3/49.0/50.2% (fold seeds 0/1/2); on 16,976 rows
    (with more probes), 46.2% against 46.9% (seed 0). Within the folds' noise: left at 8."""
    return replace(settings, rounds=150, learning_rate=0.3)


@dataclass
class _Design:
    """The unit rows of a set of networks, and which network each unit belongs to."""

    units: np.ndarray
    base: np.ndarray  # log of each unit's prior cost
    net: np.ndarray
    log_y: np.ndarray

    def take(self, networks: np.ndarray) -> _Design:
        keep = np.isin(self.net, networks)
        renumber = np.full(len(self.log_y), -1)
        renumber[networks] = np.arange(len(networks))
        return _Design(self.units[keep], self.base[keep], renumber[self.net[keep]], self.log_y[networks])

    def error(self, margin: np.ndarray) -> float:
        """Mean absolute log error of the networks' sums."""
        return float(np.mean(np.abs(np.log(np.bincount(self.net, np.exp(margin))) - self.log_y)))


def _stack(parts: list[tuple[np.ndarray, np.ndarray, float]], width: int) -> _Design:
    """One design from per-network (tree inputs of its units, log base time per unit, log target)."""
    if not parts:
        return _Design(np.zeros((0, width)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    return _Design(np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   np.repeat(np.arange(len(parts)), [len(p[1]) for p in parts]), np.array([p[2] for p in parts]))


def _positive(v: float) -> bool:
    return bool(np.isfinite(v) and v > 0)


def _design(X: np.ndarray, latency: np.ndarray, prior: Prior) -> tuple[_Design, np.ndarray]:
    """Baseline rows with known layers: units start from their share of the linear prior."""
    parts, used = [], []
    for i, key in enumerate(F.profile_keys(X) if len(X) else ()):
        u = units_of(key)
        if u is None or not _positive(latency[i]):
            continue
        parts.append((unit_matrix(u, X[i]), np.log(np.maximum(prior_unit_costs(prior, X[i], u), _MIN_UNIT_MS)),
                      math.log(latency[i])))
        used.append(i)
    return _stack(parts, len(UNIT_FEATURES)), np.asarray(used, dtype=np.int64)


def _train(design: _Design, settings: FitSettings, rounds: int, names: list[str], valid: _Design | None = None
           ) -> tuple[Any, list[float]]:
    """Boost on `design`; with `valid`, stop when its error has not improved for `patience`
    rounds, and return its error after each round (the first: the prior alone)."""
    import xgboost as xgb  # fit-time only

    dtrain = xgb.DMatrix(design.units, label=np.zeros(len(design.net)), base_margin=design.base,
                         feature_names=names)
    net, log_y = design.net, design.log_y

    def objective(margin: np.ndarray, _: Any) -> tuple[np.ndarray, np.ndarray]:
        # Loss per network: (log sum_u exp(margin_u) - log y)^2. A unit's gradient is twice the
        # network's log error times its share w of the network's time; 2w is used for the
        # hessian (a majoriser: a leaf holding a whole network moves it by exactly its error).
        t = np.exp(margin)
        total = np.bincount(net, t)
        share = t / total[net]
        error = (np.log(total) - log_y)[net]
        return 2.0 * error * share, np.maximum(2.0 * share, 1e-9)

    params = {"max_depth": settings.max_depth, "eta": settings.learning_rate, "tree_method": "hist",
              "min_child_weight": settings.min_child_weight, "lambda": settings.reg_lambda,
              "subsample": settings.subsample, "colsample_bytree": settings.colsample_bytree,
              "nthread": settings.n_jobs, "seed": settings.seed, "base_score": 0.0,
              "objective": "reg:squarederror", "disable_default_eval_metric": 1, "verbosity": 0}
    if valid is None:
        return xgb.train(params, dtrain, rounds, obj=objective), []
    dvalid = xgb.DMatrix(valid.units, label=np.zeros(len(valid.net)), base_margin=valid.base,
                         feature_names=names)
    history = [valid.error(valid.base)]

    def metric(margin: np.ndarray, _: Any) -> tuple[str, float]:
        history.append(valid.error(margin))
        return "network_log_error", history[-1]

    booster = xgb.train(params, dtrain, rounds, obj=objective, evals=[(dvalid, "valid")], custom_metric=metric,
                        early_stopping_rounds=settings.patience, verbose_eval=False)
    return booster, history


def _rounds(design: _Design, groups: np.ndarray, settings: FitSettings, names: list[str]) -> int:
    """Rounds minimising the held-out network error averaged over folds of the groups (one
    held-out family alone is too noisy a judge); 0 (keep the prior) when that error is not
    `settings.min_gain` below the prior's; `settings.rounds` when there are too few groups."""
    named = np.array([x is not None and str(x) != "" for x in groups], dtype=bool)
    distinct = np.unique(groups[named].astype(str)) if named.any() else np.zeros(0, dtype=str)
    folds = min(settings.validation_folds, len(distinct))
    if folds < 2:
        return settings.rounds
    rng = np.random.default_rng(settings.seed)
    fold_of = dict(zip(rng.permutation(distinct), np.arange(len(distinct)) % folds))
    fold = np.array([fold_of[str(x)] if ok else -1 for x, ok in zip(groups, named)])
    curves = np.zeros(settings.rounds + 1)
    for k in range(folds):
        held = fold == k
        _, history = _train(design.take(np.flatnonzero(~held)), settings, settings.rounds, names,
                            design.take(np.flatnonzero(held)))
        # A fold that stopped early keeps its last error (a flat tail) for the average.
        curves += np.concatenate([history, np.full(settings.rounds + 1 - len(history), history[-1])])
    best = int(np.argmin(curves))
    # Trees that beat the prior on held-out groups by a hair have learned noise that happened to
    # fit: at depth 8, on rows the linear prior explains to 2% noise, one round lowered the
    # held-out error by 0.04% and was kept.
    return best if curves[best] <= curves[0] * (1.0 - settings.min_gain) else 0


def _fit_design(design: _Design, groups: np.ndarray, settings: FitSettings, names: list[str]
                ) -> tuple[Forest, bytes] | None:
    if len(design.log_y) < settings.min_networks:
        return None
    rounds = _rounds(design, groups, settings, names)
    if rounds == 0:
        return None
    booster, _ = _train(design, settings, rounds, names)
    raw = bytes(booster.save_raw("json"))
    return Forest.from_json(raw), raw


def _groups(groups: np.ndarray | None, X: np.ndarray, used: np.ndarray) -> np.ndarray:
    return np.asarray(groups, dtype=object)[used] if groups is not None else F.profile_keys(X[used])


def fit(X: np.ndarray, latency: np.ndarray, prior: Prior, settings: FitSettings = FitSettings(),
        groups: np.ndarray | None = None) -> tuple[LayerCosts, bytes] | None:
    """Fit the per-layer trees on baseline rows (X, measured latency in ms).

    The number of rounds is chosen by holding out whole groups (architecture families; a None or
    empty group, such as a kernel probe's, is always trained on), in `settings.validation_folds`
    folds: the trees learn per-layer costs from networks that share layers, and only held-out
    families say how far that generalises. Returns None (keep the linear prior) when fewer than
    `settings.min_networks` rows have known layers, or when no number of rounds beat the prior
    on the held-out groups; else the model, refitted on every row, and its booster JSON.
    """
    design, used = _design(X, latency, prior)
    fitted = _fit_design(design, _groups(groups, X, used), settings, list(UNIT_FEATURES))
    return None if fitted is None else (LayerCosts(fitted[0], len(design.log_y)), fitted[1])


def fit_speedups(X: np.ndarray, ratio: np.ndarray, priors: Mapping[str, Any], settings: FitSettings = FitSettings(),
                 groups: np.ndarray | None = None) -> tuple[LayerSpeedups, bytes] | None:
    """Fit the per-layer speed-up trees on compressed rows (X, measured latency ratio to the
    baseline, from the same interleaved rounds), starting from each unit's baseline time
    (`priors`: the linear prior and, where fitted, the per-layer costs). Rounds and None as `fit`."""
    parts, used = [], []
    Xb = F.as_baseline(X) if len(X) else X
    compressed = ~F.is_baseline(X) if len(X) else np.zeros(0, dtype=bool)
    for i, key in enumerate(F.profile_keys(X) if len(X) else ()):
        u = units_of(key)
        if u is None or not compressed[i] or not _positive(ratio[i]):
            continue
        c = _log_unit_costs(priors, Xb[i], key, u)
        parts.append((step_matrix(u, X[i], key), c, math.log(ratio[i]) + float(np.log(np.sum(np.exp(c))))))
        used.append(i)
    design = _stack(parts, len(RATIO_FEATURES))
    fitted = _fit_design(design, _groups(groups, X, np.asarray(used, dtype=np.int64)), settings,
                         list(RATIO_FEATURES))
    return None if fitted is None else (LayerSpeedups(fitted[0], len(design.log_y)), fitted[1])
