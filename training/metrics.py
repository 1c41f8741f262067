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
        "balanced_accuracy": balanced_accuracy(y, prob, threshold),
        "confusion_matrix": {"labels": list(LABEL_NAMES), "rows_true_cols_pred": [[tn, fp], [fn, tp]]},
    }


def rates_by_group(groups, y_true, prob, threshold: float) -> list[dict]:
    """Per group and label, sorted by group: its images, how many the threshold gets right and that rate -- meme
    recall for memes, specificity for non-memes."""
    y = np.asarray(y_true).astype(int)
    right = (np.asarray(prob) >= threshold).astype(int) == y
    groups = np.asarray(groups, dtype=object)
    out = []
    for group in sorted(set(groups.tolist())):
        for label in (1, 0):
            mine = (groups == group) & (y == label)
            if mine.any():
                out.append({"group": group, "label": LABEL_NAMES[label], "images": int(mine.sum()),
                            "correct": int(right[mine].sum()), "rate": float(right[mine].mean())})
    return out


def format_rates(rows: list[dict]) -> str:
    """``rates_by_group``'s rows on one line: ``group rate (correct/images)``."""
    return ", ".join(f"{r['group']} {r['rate']:.3f} ({r['correct']}/{r['images']})" for r in rows)


def balanced_accuracy(y_true, prob, threshold: float) -> float:
    """Mean of meme recall and non-meme specificity at ``threshold`` (Youden's J = 2 x this - 1)."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(prob) >= threshold
    return float(((pred & (y == 1)).sum() / max(1, (y == 1).sum()) + (~pred & (y == 0)).sum() / max(1, (y == 0).sum()))
                 / 2)


def choose_threshold(y_true, prob) -> float:
    """The decision threshold a model is saved with, chosen on the validation split.

    Rule: among DEFAULT_THRESHOLD and the midpoints between consecutive
    distinct validation probabilities, find the highest balanced accuracy
    (equivalently Youden's J: recall + specificity - 1); of the thresholds
    within one validation image of it (one image of the smaller class, the
    least a threshold can change), take the one closest to
    DEFAULT_THRESHOLD. Balanced accuracy, not accuracy, so the answer does not
    depend on the class ratio of the validation split; the one-image margin,
    so a lone outlier in a small validation split cannot push the threshold
    to 0.999 (seen in a 96-image split). With one class only there is
    nothing to balance: the default is kept.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=float)
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    if not len(pos) or not len(neg):
        return DEFAULT_THRESHOLD
    distinct = np.unique(p)
    candidates = np.unique(np.r_[DEFAULT_THRESHOLD, (distinct[1:] + distinct[:-1]) / 2])
    recall = (len(pos) - np.searchsorted(pos, candidates, side="left")) / len(pos)
    specificity = np.searchsorted(neg, candidates, side="left") / len(neg)
    score = recall + specificity
    best = np.flatnonzero(score >= score.max() - 1 / min(len(pos), len(neg)) - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - DEFAULT_THRESHOLD))]])


def reliability_bins(y_true, prob, bins: int = 10) -> list[dict]:
    """Equal-width probability bins over [0, 1] (1.0 falls in the last): count, mean probability, meme fraction.

    A calibrated model's meme fraction in each bin matches its mean
    probability; empty bins are listed with count 0 and None.
    """
    y = np.asarray(y_true).astype(float)
    p = np.asarray(prob, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    return [{"low": k / bins, "high": (k + 1) / bins, "count": int(count[k]),
             "mean_probability": float(sum_p[k] / count[k]) if count[k] else None,
             "meme_fraction": float(sum_y[k] / count[k]) if count[k] else None} for k in range(bins)]


def expected_calibration_error(bins: list[dict]) -> float:
    """Count-weighted mean gap between mean probability and meme fraction over the bins."""
    total = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["mean_probability"] - b["meme_fraction"]) for b in bins if b["count"]) / max(1, total)
