"""Classification quality from a model's outputs, numpy only (runs beside a bare TFLite interpreter)."""

from __future__ import annotations

import numpy as np


def _ranked(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best classes of each row, best first; ties go to the lower class index, as argmax does."""
    # float64 first: negating int8 -128 would overflow.
    return np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, num_classes: int) -> dict[str, float | int | None]:
    """Accuracy and macro precision, recall and F1 of predictions against labels.

    Macro averages run over the classes present in `y_true` or in the predictions, a class never
    predicted counting precision 0: scikit-learn's `average="macro", zero_division=0`.

    Quantized (int8/uint8) scores work unchanged: dequantizing is a monotonic affine map, so the
    ranking of classes, and hence argmax and top-5, is the same as for the float scores.

    Args:
        y_true: (N,) integer class indices.
        scores: (N, C) per-class probabilities, logits or quantized scores; or (N,) predicted labels.
        num_classes: the dataset's number of classes (top-5 only when it is at least 5).

    Returns:
        `top1` (accuracy), `top5` (None for label predictions, fewer than 5 classes or 5 columns),
        `precision`, `recall`, `f1` (macro) as floats, and `n`, the number of samples.

    Raises:
        ValueError: empty input, mismatched lengths, or scores that are neither (N,) nor (N, C>1).
    """
    y, s = _labels_and(y_true, scores)
    top5: float | None = None
    if s.ndim == 1:
        pred = s.astype(np.int64)
    elif s.ndim == 2 and s.shape[1] > 1:
        ranked = _ranked(s, 5)
        pred = ranked[:, 0]
        if num_classes >= 5 and s.shape[1] >= 5:
            top5 = float(np.mean(np.any(ranked == y[:, None], axis=1)))
    else:
        raise ValueError(f"scores must be (N,) labels or (N, C) with C > 1, got shape {s.shape}")
    return _metrics(y, pred, top5)


def topk_metrics(y_true: np.ndarray, topk: np.ndarray, num_classes: int) -> dict[str, float | int | None]:
    """`classification_metrics` from ranked class indices instead of scores.

    For a device that sends back only each sample's best k classes, best first (an (N, k) integer
    array): `top5` needs k >= 5 and num_classes >= 5, the rest is as in `classification_metrics`.
    """
    y, ranked = _labels_and(y_true, topk)
    if ranked.ndim != 2 or ranked.shape[1] < 1 or ranked.dtype.kind not in "iu":
        raise ValueError(f"topk must be (N, k) integer class indices, got {ranked.dtype} of shape {ranked.shape}")
    top5 = None
    if num_classes >= 5 and ranked.shape[1] >= 5:
        top5 = float(np.mean(np.any(ranked[:, :5] == y[:, None], axis=1)))
    return _metrics(y, ranked[:, 0].astype(np.int64), top5)


def _labels_and(y_true: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(outputs)
    if len(y) == 0:
        raise ValueError("no samples to score")
    if s.ndim == 0 or s.shape[0] != len(y):
        raise ValueError(f"{len(y)} labels but outputs of shape {s.shape}")
    return y, s


def _metrics(y: np.ndarray, pred: np.ndarray, top5: float | None) -> dict[str, float | int | None]:
    labels, y_idx = np.unique(np.concatenate([y, pred]), return_inverse=True)
    t_idx, p_idx = y_idx[: len(y)], y_idx[len(y):]
    k = len(labels)
    support = np.bincount(t_idx, minlength=k).astype(np.float64)
    predicted = np.bincount(p_idx, minlength=k).astype(np.float64)
    hits = np.bincount(t_idx[t_idx == p_idx], minlength=k).astype(np.float64)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {
        "top1": float(np.mean(pred == y)),
        "top5": top5,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "n": len(y),
    }
