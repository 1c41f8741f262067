"""The original project's preprocessing, kept verbatim as the reference.

``transform.fit_original`` must equal it within rounding (tests), and
``benchmarks/build_h5.py`` times the builder against it.
"""

from __future__ import annotations

import numpy as np


def original_block_means(rgb: np.ndarray) -> np.ndarray:
    """/255, then a Python double loop of np.mean over k x k blocks of the top-left k*128 square."""
    a = rgb.astype(np.float64) / 255
    side = (min(a.shape[:2]) // 128) * 128
    k = side // 128
    out = np.zeros((128, 128, 3))
    for i in range(128):
        for j in range(128):
            out[i, j] = np.mean(a[i * k:(i + 1) * k, j * k:(j + 1) * k], axis=(0, 1))
    return out
