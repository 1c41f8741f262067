"""Binary classification metrics in plain NumPy (label 1 = meme is positive)."""

from __future__ import annotations

import numpy as np

from processing.schema import DEFAULT_THRESHOLD, LABEL_NAMES


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0,0) to (1,1)."""
    order = np.argsort(-score, kind="mergesort")
    y, s = np.asarray(y_true)[order], np.asarray(score)[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    p, n = y.sum(), len(y) - y.sum()
    tpr = np.r_[0.0, tps / p] if p else np.r_[0.0, np.zeros(len(tps))]
    fpr = np.r_[0.0, fps / n] if n else np.r_[0.0, np.zeros(len(fps))]
    return fpr, tpr


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (ties counted half); None when one class is absent."""
    y = np.asarray(y_true)
    if y.min(initial=1) == y.max(initial=0):
        return None
    fpr, tpr = roc_curve(y, score)
    return float(np.trapezoid(tpr, fpr))


def binary_report(y_true, prob, threshold: float = DEFAULT_THRESHOLD) -> dict:
    y = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "count": int(len(y)), "memes": int(y.sum()), "non_memes": int(len(y) - y.sum()),
        "threshold": threshold,
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "precision": precision, "recall": recall, "f1": f1,
        "roc_auc": roc_auc(y, prob),
        "confusion_matrix": {"labels": list(LABEL_NAMES), "rows_true_cols_pred": [[tn, fp], [fn, tp]]},
    }
