"""Quality metrics agree with scikit-learn, including classes never predicted and quantized scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, top_k_accuracy_score

from measure.quality import classification_metrics, topk_metrics


def _sklearn(y, pred, scores=None):
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    top5 = None if scores is None else top_k_accuracy_score(y, scores, k=5, labels=np.arange(scores.shape[1]))
    return {"top1": accuracy_score(y, pred), "top5": top5, "precision": p, "recall": r, "f1": f}


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, 300)
    scores = rng.random((300, 10))
    scores[np.arange(300), y] += rng.random(300) * 0.6  # better than chance
    scores[:, 7] -= 2.0  # class 7 is never predicted: precision 0 for it
    got = classification_metrics(y, scores, 10)
    want = _sklearn(y, scores.argmax(1), scores)
    assert 7 not in scores.argmax(1)
    assert got["n"] == 300
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_labels_as_predictions_and_unseen_predicted_class():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 6, 200))  # predicts 4 and 5, absent from y
    got = classification_metrics(y, pred, 6)
    want = _sklearn(y, pred)
    assert got["top5"] is None
    for key in ("top1", "precision", "recall", "f1"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_few_classes_have_no_top5():
    y = np.array([0, 1, 1, 0, 2])
    scores = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0], [1, 0, 0], [0, 0, 1]])
    got = classification_metrics(y, scores, 3)
    assert got["top5"] is None and got["top1"] == pytest.approx(0.8)
    assert got["precision"] == pytest.approx(precision_recall_fscore_support(
        y, scores.argmax(1), average="macro", zero_division=0)[0])


def test_quantized_scores_rank_as_floats():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 400)
    logits = rng.normal(size=(400, 10))
    logits[np.arange(400), y] += 1.0
    scale, zero = 0.02, -3
    q = np.clip(np.round(logits / scale) + zero, -128, 127).astype(np.int8)  # includes -128: no overflow
    assert (q == -128).any()
    got = classification_metrics(y, q, 10)
    deq = (q.astype(np.float64) - zero) * scale
    assert got == classification_metrics(y, deq, 10)
    assert got["top1"] == pytest.approx(accuracy_score(y, deq.argmax(1)))
    u = (q.astype(np.int16) + 128).astype(np.uint8)
    assert classification_metrics(y, u, 10) == got


def test_ties_follow_argmax():
    y = np.array([0, 1])
    scores = np.zeros((2, 6), dtype=np.int8)  # all tied: argmax says class 0
    got = classification_metrics(y, scores, 6)
    assert got["top1"] == 0.5 and got["top5"] == 1.0


@pytest.mark.parametrize("y, scores", [
    (np.array([], dtype=int), np.zeros((0, 3))),
    (np.array([0, 1]), np.zeros((3, 3))),
    (np.array([0, 1]), np.zeros((2, 1))),
])
def test_bad_inputs(y, scores):
    with pytest.raises(ValueError):
        classification_metrics(y, scores, 3)


def test_topk_indices_give_the_same_metrics():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 10, 200)
    scores = rng.random((200, 10))
    scores[np.arange(200), y] += 0.3
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :5]  # what a device agent sends back
    assert topk_metrics(y, ranked, 10) == classification_metrics(y, scores, 10)
    assert topk_metrics(y, ranked[:, :1], 10)["top5"] is None
    with pytest.raises(ValueError):
        topk_metrics(y, scores, 10)
