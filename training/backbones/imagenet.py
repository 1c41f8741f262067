"""Pictures as an ImageNet classifier is checked on them, with numpy and Pillow only.

Shared by the reference script (``tools/lite0_reference.py``, run beside
PyTorch) and the tests of the Keras port, so both see the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from processing.decode import decode_image

SIDE = 224                     # EfficientNet-Lite0's training resolution
MEAN, STD = 127.0, 128.0       # efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3
# a few pictures for the exact comparison: animals, an object, a scene (photos/imagenet-samples)
REFERENCE_PICTURES = ("n01440764_tench.JPEG", "n02123045_tabby.JPEG", "n02100583_vizsla.JPEG",
                      "n02236044_mantis.JPEG", "n02268443_dragonfly.JPEG", "n09472597_volcano.JPEG")


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB to the trunk's input scale, ``(pixel - 127) / 128``; the model's own Rescaling layer does the same."""
    return (np.asarray(pixels, np.float32) - MEAN) / STD


def centre_view(rgb: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The shorter side resized to ``side`` (bilinear), then the centre ``side`` x ``side`` square, uint8."""
    h, w = rgb.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    resized = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    top, left = (size[1] - side) // 2, (size[0] - side) // 2
    return resized[top:top + side, left:left + side]


def load_view(path: str | Path, side: int = SIDE) -> np.ndarray:
    return centre_view(decode_image(Path(path).read_bytes()).rgb, side)


def synset_order(names: list[str]) -> np.ndarray:
    """Each file's class index if ImageNet's 1000 classes are the sorted synsets: its rank among the sorted
    synset ids of ``names`` (``n01440764_tench.JPEG`` -> ``n01440764``), scaled onto 0..999."""
    ids = [n.split("_", 1)[0] for n in names]
    ranks = np.argsort(np.argsort(ids, kind="stable"), kind="stable")
    return ranks * 999 / max(len(ids) - 1, 1)


def rank_correlation(a, b) -> float:
    """Spearman's rho (no ties expected): Pearson's r of the ranks."""
    ra = np.argsort(np.argsort(np.asarray(a), kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(np.asarray(b), kind="stable"), kind="stable").astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])
