"""A numpy evaluator for XGBoost tree ensembles saved as JSON.

Importing xgboost costs over a second on a small board, and the advisor has to answer in
under one, so the answer path reads the model JSON (`booster.save_raw("json")` or
`save_model("x.json")`) and evaluates it here with numpy alone.

What is supported, and checked on load (anything else raises `BundleError`):
  * `gbtree` boosters with numeric splits (no categorical splits, no DART);
  * identity-link objectives (`reg:squarederror`, `reg:quantileerror`, `reg:absoluteerror`,
    `reg:pseudohubererror`), so the prediction is the margin;
  * one output (`num_target` 1) or several (multi-quantile, `num_target` 3): either one tree per
    output per round (`tree_info` says which output each tree feeds; a leaf's value is its
    `split_conditions` entry) or one tree whose leaves hold a vector (`multi_strategy=
    "multi_output_tree"`: `size_leaf_vector` > 1, a leaf's `right_children` entry indexes
    `leaf_weights`);
  * `base_score` as one number or, as xgboost 3 writes it, a list string like `"[1E0,2E0,3E0]"`.

Semantics follow xgboost's: features are compared in float32, a row goes left when
`x < split_condition`, and a missing value (NaN) follows the node's `default_left`.

How: the trees are flattened once, breadth-first, into a few arrays in which a node's right
child is always `left + 1` and a leaf's `left` is itself with a +inf threshold (so a row that
reached a leaf stays there). Then every row walks every tree at once, one depth level per step,
deepest trees first so that each level touches only the trees still that deep. When many rows
share most columns (one model and device, thousands of compression pipelines), `predict` first
folds the shared columns into the trees (`specialise`), which leaves far shallower trees.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advisor.errors import BundleError

#: Objectives whose prediction is the raw margin; others would need their link function.
IDENTITY_OBJECTIVES = frozenset(
    {"reg:squarederror", "reg:quantileerror", "reg:absoluteerror", "reg:pseudohubererror"}
)

# Rows evaluated together: keeps the (rows x trees) index arrays in cache.
_CHUNK_CELLS = 1 << 18
_F32_MAX = float(np.finfo(np.float32).max)
# From this many rows on, columns shared by every row are folded into the trees first.
_SPECIALISE_MIN_ROWS = 64
# ... and rows that no remaining split tells apart are walked once when that leaves at most this share.
_DISTINCT_SHARE = 0.8
# Specialised forests remembered per forest (each a few thousand nodes).
_SPECIALISED_KEPT = 16
# The array fields of a Forest, in its compiled (.npz) form.
_ARRAYS = ("feature", "threshold", "default_left", "left", "leaf_value", "roots", "tree_depth", "tree_target",
           "target_weights", "base_score")


@dataclass(frozen=True, eq=False)
class Forest:
    """A flattened tree ensemble; `predict(X)` gives the same numbers as xgboost's `predict`.

    Attributes:
        feature, threshold, default_left, left: per node, all trees together, laid out so that a
            node's right child is `left + 1`; a leaf's `left` is itself, its threshold +inf and
            its default left.
        leaf_value: per node; shape (nodes,) when each tree feeds one output, else (nodes, K).
        roots: each tree's root, deepest tree first; tree_depth: each tree's depth (descending);
        tree_target: the output each tree feeds (-1: all, vector leaves); target_weights: its
            (trees, K) one-hot, to sum leaves per output.
        base_score: per output; num_feature: expected columns; num_target: outputs (K).
    """

    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    left: np.ndarray
    leaf_value: np.ndarray
    roots: np.ndarray
    tree_depth: np.ndarray
    tree_target: np.ndarray
    target_weights: np.ndarray
    base_score: np.ndarray
    num_feature: int
    num_target: int
    objective: str

    @property
    def n_trees(self) -> int:
        return int(self.roots.size)

    @property
    def n_nodes(self) -> int:
        return int(self.left.size)

    @property
    def depth(self) -> int:
        """The deepest tree's depth (edges on its longest root-to-leaf path)."""
        return int(self.tree_depth[0]) if self.tree_depth.size else 0

    @classmethod
    def from_json(cls, model: dict | str | bytes | bytearray) -> Forest:
        """Build from a parsed model dict or its JSON text.

        Raises:
            BundleError: malformed JSON, or a model kind this evaluator does not support.
        """
        if isinstance(model, (str, bytes, bytearray)):
            try:
                model = json.loads(model)
            except (ValueError, UnicodeDecodeError) as exc:
                raise BundleError(f"xgboost model is not valid JSON: {exc}") from None
        try:
            return _parse(model)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise BundleError(f"xgboost model JSON is malformed: {exc!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> Forest:
        """Read a `.json` model file (`BundleError` if unreadable, malformed or unsupported)."""
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read xgboost model {path}: {exc.strerror or exc}") from None
        return cls.from_json(text)

    def to_npz(self, path: Path) -> None:
        """Write the flattened arrays as an uncompressed .npz (no pickled objects), atomically."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        meta = np.array([self.num_feature, self.num_target], dtype=np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
        try:
            with temp.open("wb") as handle:
                np.savez(handle, meta=meta, objective=np.array(self.objective), **arrays)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    @classmethod
    def from_npz(cls, path: Path) -> Forest:
        """Read what `to_npz` wrote (never unpickles).

        Raises:
            ValueError: not such a file, or arrays that do not fit together.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in _ARRAYS}
                num_feature, num_target = (int(v) for v in data["meta"])
                objective = str(data["objective"])
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ValueError(f"not a compiled forest: {exc}") from None
        nodes = arrays["left"].size
        if any(arrays[name].shape[:1] != (nodes,) for name in ("feature", "threshold", "default_left",
                                                                "leaf_value")) \
                or arrays["roots"].size != arrays["tree_depth"].size or arrays["base_score"].size != num_target \
                or (nodes and (arrays["left"].max() >= nodes or arrays["feature"].max() >= max(num_feature, 1))):
            raise ValueError("compiled forest arrays do not fit together")
        return cls(**arrays, num_feature=num_feature, num_target=num_target, objective=objective)

    def specialise(self, columns: np.ndarray, values: np.ndarray) -> Forest:
        """The same forest with features `columns` fixed to `values` (NaN meaning missing).

        Each split on a fixed feature is decided once, here, and the rest is laid out anew:
        predictions for rows whose fixed features hold those values are unchanged.
        """
        columns = np.asarray(columns, dtype=np.int64)
        fixed_col = np.zeros(self.num_feature, dtype=bool)
        fixed_col[columns] = True
        value = np.zeros(self.num_feature, dtype=np.float32)
        value[columns] = np.asarray(values, dtype=np.float32)
        own = np.arange(self.n_nodes)
        left = self.left.astype(np.int64)
        is_leaf = left == own
        right = np.where(is_leaf, own, left + 1)
        x = value[self.feature]
        go_left = np.where(np.isnan(x), self.default_left, x < self.threshold)
        fixed = ~is_leaf & fixed_col[self.feature]
        target = np.where(fixed, np.where(go_left, left, right), own)
        for _ in range(max(self.depth, 1).bit_length() + 1):  # pointer jumping to the first open node
            target = target[target]
        nodes = _Nodes(left=np.where(is_leaf, own, target[left]), right=np.where(is_leaf, own, target[right]),
                       feature=self.feature, threshold=self.threshold, default_left=self.default_left,
                       leaf_value=self.leaf_value)
        return _assemble(nodes, target[self.roots.astype(np.int64)], self.tree_target, self.base_score,
                         self.num_feature, self.objective)

    def predict(self, X: np.ndarray, distinct: bool = True) -> np.ndarray:
        """Predictions for each row of X (NaN = missing), shape (n, num_target).

        From `_SPECIALISE_MIN_ROWS` rows on, the columns every row shares are folded into the
        trees first and, with `distinct`, rows that no remaining split tells apart are walked once;
        a caller whose rows are already distinct up to the forest's thresholds passes False.

        Raises:
            ValueError: X does not have `num_feature` columns.
        """
        X = np.array(X, dtype=np.float32, ndmin=2)  # a copy, clipped next
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ValueError(f"X has shape {X.shape}; the model expects {self.num_feature} columns")
        # A +-inf value compares like the largest float32 with any finite threshold, but must not
        # get past a leaf's +inf threshold.
        np.clip(X, -_F32_MAX, _F32_MAX, out=X)
        if X.shape[0] < _SPECIALISE_MIN_ROWS:
            return self._predict_rows(X)
        shared = _shared_columns(X)
        if shared.size == self.num_feature:  # every row the same: one walk does
            return np.repeat(self._predict_chunk(X[:1]), X.shape[0], axis=0)
        forest = self._specialised(shared, X[0, shared]) if shared.size else self
        # Candidates often differ only where no split of the (specialised) forest tells them
        # apart (cluster:16 and cluster:32 before the same quantization): each distinct row once.
        if not distinct:
            return forest._predict_rows(X)
        used = np.flatnonzero([cut.size for cut in forest._cuts()])
        if not used.size:  # every split decided by the shared columns
            return np.repeat(forest._predict_chunk(X[:1]), X.shape[0], axis=0)
        first, inverse = forest.distinct_rows(X[:, used], used)
        if len(first) <= _DISTINCT_SHARE * X.shape[0]:
            return forest._predict_rows(X[first])[inverse]
        return forest._predict_rows(X)

    def _specialised(self, columns: np.ndarray, values: np.ndarray) -> Forest:
        """`specialise`, remembered for the last few (columns, values): scoring one network's
        candidates again (another budget, another objective) folds the same shared columns."""
        cache = self.__dict__.get("_specialised_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_specialised_cache", cache)
        key = (columns.tobytes(), np.asarray(values, dtype=np.float32).tobytes())
        found = cache.get(key)
        if found is None:
            found = cache[key] = self.specialise(columns, values)
            if len(cache) > _SPECIALISED_KEPT:
                del cache[next(iter(cache))]
        return found

    def _predict_rows(self, X: np.ndarray) -> np.ndarray:
        """`_predict_chunk` over X in chunks that keep the (rows x trees) index arrays in cache."""
        out = np.empty((X.shape[0], self.num_target))
        step = max(1, _CHUNK_CELLS // max(self.n_trees, 1))
        for start in range(0, X.shape[0], step):
            out[start:start + step] = self._predict_chunk(X[start:start + step])
        return out

    def predict_distinct(self, X: np.ndarray) -> np.ndarray:
        """The same as `predict`, but rows that no split of the whole forest tells apart are walked
        once, however few (`predict` looks for them only in batches of `_SPECIALISE_MIN_ROWS`, after
        folding the shared columns).

        Two rows that fall on the same side of every threshold the forest has, feature by
        feature, take the same path through every tree: each value is replaced by how many of
        its feature's thresholds it reaches (NaN by -1), and only distinct code rows are walked.
        Worth it when rows repeat up to the forest's resolution (per-layer rows of candidates).
        """
        X = np.array(X, dtype=np.float32, ndmin=2)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ValueError(f"X has shape {X.shape}; the model expects {self.num_feature} columns")
        first, inverse = self.distinct_rows(X, np.arange(self.num_feature))
        return self.predict(X[first], distinct=False)[inverse]

    def distinct_rows(self, X: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first, inverse): rows of X (its `columns` of the forest's features) that no split on
        those columns tells apart share one index; `first` holds a representative row of each,
        `inverse` each row's."""
        X = np.clip(np.array(X, dtype=np.float32, ndmin=2), -_F32_MAX, _F32_MAX)
        cuts = self._cuts()
        codes = np.empty(X.shape, dtype=np.int32)
        for j, column in enumerate(columns):
            codes[:, j] = np.searchsorted(cuts[column], X[:, j], side="right") if cuts[column].size else 0
        codes[np.isnan(X)] = -1
        as_bytes = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.itemsize * codes.shape[1]))).ravel()
        _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
        return first, inverse.ravel()

    def _cuts(self) -> list[np.ndarray]:
        """Per feature, the sorted distinct thresholds its splits use (computed once)."""
        cached = self.__dict__.get("_cuts_cache")
        if cached is None:
            split = np.isfinite(self.threshold)
            feature, threshold = self.feature[split], self.threshold[split].astype(np.float32)
            # Sorted by feature then threshold, duplicates dropped, cut into one slice per feature
            # (np.unique per feature would cost a pass per feature, and imports numpy.ma).
            order = np.lexsort((threshold, feature))
            feature, threshold = feature[order], threshold[order]
            keep = np.ones(feature.size, dtype=bool)
            keep[1:] = (feature[1:] != feature[:-1]) | (threshold[1:] != threshold[:-1])
            feature, threshold = feature[keep], threshold[keep]
            bounds = np.searchsorted(feature, np.arange(self.num_feature + 1))
            cached = [threshold[bounds[j]:bounds[j + 1]] for j in range(self.num_feature)]
            object.__setattr__(self, "_cuts_cache", cached)
        return cached

    def _predict_chunk(self, X: np.ndarray) -> np.ndarray:
        n, width = X.shape
        if self.n_trees == 0:
            return np.broadcast_to(self.base_score, (n, self.num_target)).copy()
        flat = X.ravel()
        missing: np.ndarray | None = np.isnan(flat)
        if not missing.any():  # type: ignore[union-attr]
            missing = None
        offsets = (np.arange(n, dtype=self.left.dtype) * width)[:, None]
        node = np.repeat(self.roots[None, :], n, axis=0)
        # The trees still deeper than each level are a prefix: the deepest come first.
        for level in range(self.depth):
            k = int(np.count_nonzero(self.tree_depth > level))
            at = node[:, :k]
            cell = offsets + self.feature[at]
            go_right = ~(flat[cell] < self.threshold[at])
            if missing is not None:
                go_right &= ~(missing[cell] & self.default_left[at])
            node[:, :k] = self.left[at] + go_right
        values = self.leaf_value[node]
        if values.ndim == 3:  # vector leaves: (n, trees, K)
            return values.sum(axis=1) + self.base_score
        return values @ self.target_weights + self.base_score


def compiled(raw: bytes, sha256: str, cache: Path | None) -> Forest:
    """The forest of model JSON `raw` (whose hash the caller verified), read from its compiled
    copy `<cache>/<sha256>.npz` when there is one, else parsed and compiled there for next time.

    Parsing a bundle's JSON takes about a quarter of a cold `advisor recommend`; the compiled
    arrays load in milliseconds. A missing, unreadable or unwritable cache only costs the parse.
    """
    path = cache / f"{sha256}.npz" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return Forest.from_npz(path)
        except ValueError:
            pass  # damaged: parse again and replace it
    forest = Forest.from_json(raw)
    if path is not None:
        try:
            forest.to_npz(path)
        except OSError:
            pass
    return forest


@dataclass(frozen=True)
class _Nodes:
    """Per-node arrays in some numbering; a leaf has left == right == itself."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    leaf_value: np.ndarray


def _parse(model: dict) -> Forest:
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective not in IDENTITY_OBJECTIVES:
        raise BundleError(f"xgboost objective {objective!r} is not supported "
                          f"(valid: {', '.join(sorted(IDENTITY_OBJECTIVES))})")
    booster = learner["gradient_booster"]
    if booster["name"] != "gbtree":
        raise BundleError(f"xgboost booster {booster['name']!r} is not supported (only gbtree)")
    params = learner["learner_model_param"]
    if int(params.get("num_class", 0)) > 1:
        raise BundleError("multi-class xgboost models are not supported")
    num_target = max(int(params.get("num_target", 1)), 1)
    num_feature = int(params["num_feature"])
    base = _parse_base_score(params["base_score"], num_target)
    trees = booster["model"]["trees"]
    info = booster["model"].get("tree_info", [0] * len(trees))

    parts: dict[str, list[np.ndarray]] = {k: [] for k in _Nodes.__dataclass_fields__}
    roots, targets, offset = [], [], 0
    for tree, target in zip(trees, info):
        if any(int(t) != 0 for t in tree.get("split_type", [])):
            raise BundleError("xgboost model has categorical splits, which are not supported")
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        is_leaf = left < 0
        condition = np.asarray(tree["split_conditions"], dtype=np.float64)
        leaf_size = int(tree.get("tree_param", {}).get("size_leaf_vector", 1) or 1)
        if leaf_size > 1:
            if leaf_size != num_target:
                raise BundleError(f"xgboost tree leaves hold {leaf_size} values for {num_target} outputs")
            weights = np.asarray(tree["leaf_weights"], dtype=np.float64).reshape(-1, leaf_size)
            value = np.zeros((left.size, leaf_size))
            value[is_leaf] = weights[right[is_leaf]]
            target = -1
        else:
            value = np.where(is_leaf, condition, 0.0)
        own = np.arange(left.size) + offset
        parts["left"].append(np.where(is_leaf, own, left + offset))
        parts["right"].append(np.where(is_leaf, own, right + offset))
        parts["feature"].append(np.where(is_leaf, 0, np.asarray(tree["split_indices"], dtype=np.int64)))
        parts["threshold"].append(condition.astype(np.float32))
        parts["default_left"].append(np.asarray(tree["default_left"], dtype=bool))
        parts["leaf_value"].append(value)
        roots.append(offset)
        targets.append(int(target))
        offset += left.size
    if len({v.ndim for v in parts["leaf_value"]}) > 1:
        raise BundleError("xgboost model mixes vector-leaf and scalar-leaf trees")
    if not trees:
        empty = {k: np.zeros(0, dtype=np.int64) for k in ("left", "right", "feature")}
        nodes = _Nodes(**empty, threshold=np.zeros(0, np.float32), default_left=np.zeros(0, bool),
                       leaf_value=np.zeros(0))
    else:
        nodes = _Nodes(**{k: np.concatenate(v) for k, v in parts.items()})
    return _assemble(nodes, np.asarray(roots, dtype=np.int64), np.asarray(targets, dtype=np.int64), base,
                     num_feature, objective, num_target)


def _parse_base_score(text: object, num_target: int) -> np.ndarray:
    """`'5E-1'` or `'[1E0,2E0,3E0]'` (xgboost >= 3) to an array of `num_target` floats."""
    raw = str(text).strip()
    values = [float(v) for v in raw.strip("[]").split(",") if v.strip()]
    if len(values) == 1:
        values = values * num_target
    if len(values) != num_target:
        raise BundleError(f"xgboost model: base_score has {len(values)} values for {num_target} outputs")
    return np.asarray(values, dtype=np.float64)


def _assemble(nodes: _Nodes, roots: np.ndarray, tree_target: np.ndarray, base: np.ndarray, num_feature: int,
              objective: str, num_target: int | None = None) -> Forest:
    """Lay the nodes reachable from `roots` out breadth-first, deepest tree first, into a Forest."""
    num_target = base.size if num_target is None else num_target
    left, right = nodes.left, nodes.right
    is_leaf = left == np.arange(left.size)
    # One breadth-first pass to find each tree's depth, then one to number the nodes in order.
    depth = np.zeros(roots.size, dtype=np.int64)
    level, owner, d = roots, np.arange(roots.size), 0
    while level.size:
        open_ = ~is_leaf[level]
        depth[owner[~open_]] = np.maximum(depth[owner[~open_]], d)
        level, owner = level[open_], owner[open_]
        level, owner = np.stack([left[level], right[level]], 1).ravel(), np.repeat(owner, 2)
        d += 1
    by_depth = np.argsort(-depth, kind="stable")
    roots, tree_target, depth = roots[by_depth], tree_target[by_depth], depth[by_depth]

    new_id = np.full(left.size, -1, dtype=np.int64)
    new_id[roots] = np.arange(roots.size)
    parts, level = [roots], roots
    while True:
        level = level[~is_leaf[level]]
        if level.size == 0:
            break
        level = np.stack([left[level], right[level]], axis=1).ravel()
        new_id[level] = sum(p.size for p in parts) + np.arange(level.size)
        parts.append(level)
    order = np.concatenate(parts)
    index = np.int32 if order.size < 2**31 else np.int64
    leaf = is_leaf[order]
    leaf_value = nodes.leaf_value[order]
    leaf_value = np.where(leaf if leaf_value.ndim == 1 else leaf[:, None], leaf_value, 0.0)
    return Forest(
        feature=np.where(leaf, 0, nodes.feature[order]).astype(index),
        threshold=np.where(leaf, np.float32(np.inf), nodes.threshold[order]).astype(np.float32),
        default_left=nodes.default_left[order] | leaf,
        left=np.where(leaf, np.arange(order.size), new_id[left[order]]).astype(index),
        leaf_value=leaf_value,
        roots=np.arange(roots.size, dtype=index),
        tree_depth=depth,
        tree_target=tree_target,
        target_weights=(tree_target[:, None] == np.arange(num_target)[None, :]).astype(np.float64),
        base_score=base,
        num_feature=num_feature,
        num_target=num_target,
        objective=objective,
    )


def _shared_columns(X: np.ndarray) -> np.ndarray:
    """Columns holding one value in every row (NaN in every row counts as one value)."""
    nan = np.isnan(X)
    lo = np.where(nan, np.inf, X).min(axis=0)
    hi = np.where(nan, -np.inf, X).max(axis=0)
    return np.flatnonzero(((lo == hi) & ~nan.any(axis=0)) | nan.all(axis=0))
