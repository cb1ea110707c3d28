"""The numpy evaluator of XGBoost JSON models agrees with xgboost's own predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from advisor.errors import BundleError
from advisor.trees import Forest, _parse_base_score, compiled


def _data(n: int = 400, width: int = 8, missing: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, width))
    X[:, 5] = rng.integers(0, 3, size=n)  # a discrete column, as technique features are
    y = np.nan_to_num(2 * X[:, 0] + X[:, 1] ** 2 + X[:, 5]) + rng.normal(0, 0.3, n)
    X[rng.random(X.shape) < missing] = np.nan
    return X, y


def _train(params: dict, X: np.ndarray, y: np.ndarray, rounds: int = 30) -> xgb.Booster:
    base = {"tree_method": "hist", "max_depth": 4, "nthread": 1, "seed": 0, "verbosity": 0}
    return xgb.train({**base, **params}, xgb.DMatrix(X, label=y), num_boost_round=rounds)


def _same(forest: Forest, booster: xgb.Booster, X: np.ndarray) -> None:
    ours = forest.predict(X)
    theirs = booster.predict(xgb.DMatrix(X)).reshape(len(X), -1)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * float(np.abs(theirs).max()))


QUANTILE = {"objective": "reg:quantileerror", "quantile_alpha": [0.1, 0.5, 0.9]}


@pytest.mark.parametrize("params", [
    {"objective": "reg:squarederror"},
    {"objective": "reg:absoluteerror"},
    QUANTILE,
    {**QUANTILE, "multi_strategy": "multi_output_tree"},
    {"objective": "reg:squarederror", "gamma": 5.0, "max_depth": 6},  # pruned trees
], ids=["squared", "absolute", "quantile", "quantile-vector-leaves", "pruned"])
def test_matches_xgboost_with_missing_values(params):
    X, y = _data()
    booster = _train(params, X, y)
    forest = Forest.from_json(booster.save_raw("json"))
    test, _ = _data(n=300, seed=1, missing=0.3)
    _same(forest, booster, test)
    _same(forest, booster, test[:1])  # a single row
    assert forest.num_target == (3 if "quantile_alpha" in params else 1)


def test_loads_a_saved_model_file(tmp_path):
    X, y = _data()
    booster = _train(QUANTILE, X, y)
    booster.save_model(tmp_path / "model.json")
    _same(Forest.load(tmp_path / "model.json"), booster, X)


@pytest.mark.parametrize("params", [QUANTILE, {**QUANTILE, "multi_strategy": "multi_output_tree"}],
                         ids=["per-output-trees", "vector-leaves"])
def test_compiled_forests_are_cached_by_hash_and_predict_the_same(params, tmp_path):
    X, y = _data()
    booster = _train(params, X, y)
    raw = bytes(booster.save_raw("json"))
    first = compiled(raw, "abc123", tmp_path)
    cached = tmp_path / "abc123.npz"
    assert cached.is_file() and [p.name for p in tmp_path.iterdir()] == ["abc123.npz"]
    stamp = cached.stat().st_mtime_ns
    again = compiled(raw, "abc123", tmp_path)  # read back, not parsed
    assert cached.stat().st_mtime_ns == stamp
    _same(first, booster, X)
    _same(again, booster, X)
    _same(compiled(raw, "abc123", None), booster, X)  # no cache at all


@pytest.mark.parametrize("damage", ["garbage", "inconsistent"])
def test_a_damaged_compiled_forest_is_parsed_again_and_replaced(damage, tmp_path):
    X, y = _data()
    booster = _train(QUANTILE, X, y)
    raw = bytes(booster.save_raw("json"))
    cached = tmp_path / "h.npz"
    if damage == "garbage":
        cached.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        forest = Forest.from_json(raw)
        np.savez(cached, **{name: getattr(forest, name) for name in ("feature", "threshold", "default_left",
                                                                      "leaf_value", "roots", "tree_depth",
                                                                      "tree_target", "target_weights",
                                                                      "base_score")},
                 left=forest.left + forest.n_nodes, meta=np.array([8, 3]), objective=np.array("x"))
    with pytest.raises(ValueError):
        Forest.from_npz(cached)
    _same(compiled(raw, "h", tmp_path), booster, X)
    _same(Forest.from_npz(cached), booster, X)  # replaced by a good copy


def test_quantile_base_score_is_a_list_in_xgboost_3():
    X, y = _data()
    model = json.loads(_train(QUANTILE, X, y, rounds=2).save_raw("json"))
    text = model["learner"]["learner_model_param"]["base_score"]
    assert text.startswith("[")
    assert _parse_base_score(text, 3).shape == (3,)
    assert _parse_base_score("5E-1", 3).tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(BundleError, match="base_score"):
        _parse_base_score("[1,2]", 3)


def test_shared_columns_are_folded_in_without_changing_predictions():
    X, y = _data(n=600)
    booster = _train(QUANTILE, X, y, rounds=40)
    forest = Forest.from_json(booster.save_raw("json"))
    rng = np.random.default_rng(3)
    many = np.repeat(X[:1], 500, axis=0)  # one model and device: most columns shared
    many[:, 5] = rng.integers(0, 3, size=500)
    many[:, 1] = rng.normal(size=500)
    many[:, 7] = np.nan  # shared, and missing
    _same(forest, booster, many)  # >= 64 rows: predict specialises first
    small = forest.specialise(np.array([0, 2, 3, 4, 6, 7]), many[0, [0, 2, 3, 4, 6, 7]])
    assert small.n_nodes < forest.n_nodes and small.depth <= forest.depth
    np.testing.assert_allclose(small.predict(many[:50]), forest.predict(many[:50]))
    _same(forest, booster, np.repeat(X[2:3], 100, axis=0))  # every row the same


def test_a_batch_whose_rows_differ_only_in_a_few_settings_walks_each_distinct_row_once(monkeypatch):
    X, y = _data(n=600)
    booster = _train(QUANTILE, X, y, rounds=40)
    forest = Forest.from_json(booster.save_raw("json"))
    rng = np.random.default_rng(5)
    batch = np.repeat(X[3:4], 300, axis=0)  # candidates of one network: a few technique settings vary
    batch[:, 5] = rng.choice([0.0, 1.0, 2.0, np.nan], size=300)
    batch[:, 1] = rng.choice([-1.0, -0.999, 0.5, 2.0], size=300)  # -1 and -0.999: likely no split between
    walked = []
    chunk = Forest._predict_chunk
    monkeypatch.setattr(Forest, "_predict_chunk", lambda self, rows: walked.append(len(rows)) or chunk(self, rows))
    _same(forest, booster, batch)
    assert sum(walked) <= 16  # at most 4 x 4 distinct rows walked, not 300
    walked.clear()  # a caller whose rows are already distinct skips the search: every row walked
    np.testing.assert_allclose(forest.predict(batch, distinct=False), forest.predict(batch))
    assert walked[0] == 300


def test_rows_no_split_tells_apart_are_walked_once_with_the_same_predictions():
    X, y = _data(n=600)
    booster = _train(QUANTILE, X, y, rounds=40)
    forest = Forest.from_json(booster.save_raw("json"))
    rng = np.random.default_rng(4)
    copies = rng.integers(0, len(X), 300)
    rows = np.vstack([X, X[copies]])  # repeats, NaN included
    np.testing.assert_allclose(forest.predict_distinct(rows), forest.predict(rows), rtol=1e-6, atol=1e-9)
    first, inverse = forest.distinct_rows(rows, np.arange(rows.shape[1]))
    assert len(first) <= len(X)
    np.testing.assert_array_equal(inverse[len(X):], inverse[copies])
    # The cuts are each feature's sorted distinct split thresholds, in float32.
    split = np.isfinite(forest.threshold)
    for j, cut in enumerate(forest._cuts()):
        np.testing.assert_array_equal(cut, np.unique(forest.threshold[split & (forest.feature == j)]))
        assert cut.dtype == np.float32
    # Rows on the same side of every threshold share an index; one across a threshold does not.
    col = int(np.argmax([c.size for c in forest._cuts()]))
    cuts = forest._cuts()[col].astype(float)
    lo, hi = cuts[1], cuts[2]
    base = np.nan_to_num(X[:1])
    same_a, same_b, other = base.copy(), base.copy(), base.copy()
    same_a[0, col], same_b[0, col], other[0, col] = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo), hi + 1e-3
    _, codes = forest.distinct_rows(np.vstack([same_a, same_b, other]), np.arange(X.shape[1]))
    assert codes[0] == codes[1] != codes[2]


def test_trees_are_laid_out_with_right_child_next_to_left():
    X, y = _data()
    forest = Forest.from_json(_train({"objective": "reg:squarederror", "gamma": 5.0}, X, y).save_raw("json"))
    internal = forest.left != np.arange(forest.n_nodes)
    assert np.isinf(forest.threshold[~internal]).all()
    assert (forest.left[internal] > np.flatnonzero(internal)).all()
    assert list(forest.tree_depth) == sorted(forest.tree_depth, reverse=True)


def test_refuses_what_it_cannot_evaluate():
    X, y = _data()
    yb = (y > np.median(y)).astype(float)
    logistic = _train({"objective": "binary:logistic"}, X, yb, rounds=2).save_raw("json")
    with pytest.raises(BundleError, match="objective 'binary:logistic' is not supported"):
        Forest.from_json(logistic)
    with pytest.raises(BundleError, match="not valid JSON"):
        Forest.from_json(b"{not json")
    with pytest.raises(BundleError, match="malformed"):
        Forest.from_json({"learner": {}})
    forest = Forest.from_json(_train({"objective": "reg:squarederror"}, X, y, rounds=2).save_raw("json"))
    with pytest.raises(ValueError, match="expects 8 columns"):
        forest.predict(X[:, :5])
