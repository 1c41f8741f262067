"""Is the file itself the label? A classifier on file metadata alone, scored like the model.

Memes are more often small originals in their first format, text non-memes
more often large files (issue 26: non-memes kept in their original format
were called memes far more often than the same kind re-encoded to JPEG). A
model might learn such a cue instead of the picture. This check fits naive
Bayes on four facts of each file — format, bytes, width, height (and their
ratios: bytes per pixel, aspect) — on the training sources, and scores the
held-out ones: its ROC-AUC, printed beside the model's by ``training.cv``,
says how far the file alone separates memes from non-memes on sources never
seen. Near 0.5: no such cue; near 1: the data carries one, and the model's
figures may partly stand on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")   # any other format is one more level
NUMERIC = ("log bytes", "log width", "log height", "bytes per pixel", "log aspect")
BINS = 10                                         # numeric features: deciles of the training rows


def file_metadata(path: Path) -> tuple[int, np.ndarray] | None:
    """(format code, numeric features) from the file's header and size; None for a file Pillow cannot open."""
    try:
        size = path.stat().st_size
        with Image.open(path) as img:
            (w, h), fmt = img.size, img.format
    except (OSError, ValueError, SyntaxError):
        return None
    code = FORMATS.index(fmt) if fmt in FORMATS else len(FORMATS)
    return code, np.array([np.log(size), np.log(w), np.log(h), size / (w * h), np.log(w / h)])


def quantile_codes(train: np.ndarray, values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each value's bin among the training values' quantiles (0 .. bins-1)."""
    edges = np.unique(np.quantile(train, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def naive_bayes_log_odds(train: np.ndarray, labels: np.ndarray, test: np.ndarray, levels: list[int],
                         alpha: float = 1.0) -> np.ndarray:
    """Sum over the columns of log P(code | meme) - log P(code | non-meme), the counts Laplace-smoothed by
    ``alpha``; ``train`` and ``test`` are integer codes, column j in 0 .. levels[j]-1."""
    out = np.zeros(len(test))
    for j, n in enumerate(levels):
        logp = []
        for cls in (1, 0):
            counts = np.bincount(train[labels == cls, j], minlength=n) + alpha
            logp.append(np.log(counts / counts.sum()))
        out += logp[0][test[:, j]] - logp[1][test[:, j]]
    return out


def metadata_log_odds(train_format: np.ndarray, train_numeric: np.ndarray, train_labels: np.ndarray,
                      test_format: np.ndarray, test_numeric: np.ndarray) -> np.ndarray:
    """The held-out rows' meme log-odds from format and binned numeric features, fitted on the training rows."""
    def codes(fmt, numeric):
        cols = [fmt] + [quantile_codes(train_numeric[:, j], numeric[:, j]) for j in range(numeric.shape[1])]
        return np.stack(cols, axis=1)

    levels = [len(FORMATS) + 1] + [BINS] * train_numeric.shape[1]
    return naive_bayes_log_odds(codes(train_format, train_numeric), train_labels,
                                codes(test_format, test_numeric), levels)
