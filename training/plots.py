"""PNG figures for a run: learning curves, ROC, confusion matrix, prediction grid."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from processing.schema import DEFAULT_THRESHOLD  # noqa: E402

from .metrics import roc_curve  # noqa: E402


def learning_curves(log_csv: Path, out: Path) -> None:
    with open(log_csv) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def roc(y_true, prob, auc, out: Path, title: str = "ROC") -> None:
    fpr, tpr = roc_curve(np.asarray(y_true), np.asarray(prob))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}" if auc is not None else "one class only")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (non-memes called memes)")
    ax.set_ylabel("true positive rate (memes found)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def confusion(matrix, out: Path, title: str = "confusion matrix") -> None:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=14)
    ax.set_xticks([0, 1], ["non-meme", "meme"])
    ax.set_yticks([0, 1], ["non-meme", "meme"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def prediction_grid(images, y_true, prob, out: Path, threshold: float = DEFAULT_THRESHOLD, n: int = 3,
                    captions=None) -> None:
    """An n x n grid of images titled with predicted vs true label (the original showed 3x3), and a caption each."""
    fig, axes = plt.subplots(n, n, figsize=(2.6 * n, 2.8 * n))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k >= len(images):
            continue
        pred = int(prob[k] >= threshold)
        ax.imshow(images[k])
        ok = pred == int(y_true[k])
        ax.set_title((f"{captions[k]}\n" if captions else "")
                     + f"pred {'meme' if pred else 'not'} ({prob[k]:.2f})\ntrue {'meme' if y_true[k] else 'not'}",
                     color="green" if ok else "red", fontsize=8 if captions else 9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def reliability(bins: list[dict], ece: float, out: Path, title: str = "reliability") -> None:
    """Reliability diagram: meme fraction against mean predicted probability per bin, with counts."""
    full = [b for b in bins if b["count"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.bar([b["low"] for b in bins], [b["meme_fraction"] or 0 for b in bins], width=bins[0]["high"] - bins[0]["low"],
           align="edge", alpha=0.35, edgecolor="black", label="meme fraction per bin")
    ax.plot([b["mean_probability"] for b in full], [b["meme_fraction"] for b in full], "o-", label=f"ECE = {ece:.3f}")
    for b in full:
        ax.annotate(str(b["count"]), (b["mean_probability"], b["meme_fraction"]), fontsize=7,
                    textcoords="offset points", xytext=(0, 5), ha="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("predicted meme probability")
    ax.set_ylabel("fraction that are memes")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
