"""Occlusion maps: which parts of a picture made the model call it a meme.

Each patch of the model input is painted grey in turn, the model is run on
every copy, and the drop in meme probability is that patch's score. Pure
numpy plus a batch prediction function, so it works on any Keras backend and
on models without usable gradients.
"""

from __future__ import annotations

import numpy as np

GREY = 128


def patch_edges(size: int, grid: int) -> np.ndarray:
    """grid + 1 pixel offsets splitting ``size`` into ``grid`` nearly equal patches."""
    if not 1 <= grid <= size:
        raise ValueError(f"grid must be between 1 and {size}, got {grid}")
    return np.linspace(0, size, grid + 1).round().astype(int)


def occluded_copies(x: np.ndarray, grid: int, fill: int = GREY) -> np.ndarray:
    """(grid*grid, H, W, C) copies of the square image ``x``; copy k has patch k (row-major) set to ``fill``."""
    edges = patch_edges(x.shape[0], grid)
    out = np.repeat(x[None], grid * grid, axis=0)
    for i in range(grid):
        for j in range(grid):
            out[i * grid + j, edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = fill
    return out


def occlusion_batch(x: np.ndarray, grid: int, fill: int = GREY) -> np.ndarray:
    """The picture itself first, then its occluded copies: one model call scores them all."""
    return np.concatenate([x[None], occluded_copies(x, grid, fill)])


def drops(probabilities: np.ndarray, grid: int) -> tuple[float, np.ndarray]:
    """Scores of ``occlusion_batch``'s images to (probability, grid x grid drop per patch).

    A positive drop means covering the patch made the picture less of a meme.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    p = float(probabilities[0])
    return p, (p - probabilities[1:]).reshape(grid, grid)


def occlusion_map(predict, x: np.ndarray, grid: int, fill: int = GREY) -> tuple[float, np.ndarray]:
    """``predict``: (N, H, W, C) uint8 -> (N,) meme probabilities."""
    return drops(predict(occlusion_batch(x, grid, fill)), grid)
