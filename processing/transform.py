"""Pure array math: decoded RGB to the model's 128x128x3 uint8 input.

``fit_original`` is the original project's rule (top-left square, side the largest
multiple of 128, block mean). ``fit_square`` takes the largest top-anchored,
horizontally centred square, area-resampled, so a 250x250 thumbnail keeps its
whole picture and both captions. ``fit_letterbox`` (the default, ``DEFAULT_FIT``)
keeps the whole image whatever its shape: a wide two-panel meme keeps both
panels and a tall caption-bar meme keeps its picture, at the price of a
neutral band on the short side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .schema import INPUT_SIZE as SIZE


def original_square_side(height: int, width: int, tile: int = SIZE) -> int:
    """Largest multiple of ``tile`` that fits in both sides (0 if none)."""
    return (min(height, width) // tile) * tile


def block_mean_pool(a: np.ndarray, k: int) -> np.ndarray:
    """Mean of each k x k block, rounded half up, for an (nk, mk, C) uint8 array."""
    n, m = a.shape[0] // k, a.shape[1] // k
    sums = a[: n * k, : m * k].reshape(n, k, m, k, -1).sum(axis=(1, 3), dtype=np.uint64)
    area = k * k
    return ((sums + area // 2) // area).astype(np.uint8)


def upsample_repeat(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling by pixel repetition (CIFAR's x4 path)."""
    return a.repeat(factor, axis=0).repeat(factor, axis=1)


def area_resize(a: np.ndarray, size: int) -> np.ndarray:
    """Area (box-filter) resampling of a square uint8 image to size x size."""
    if a.shape[0] == size and a.shape[1] == size:
        return np.ascontiguousarray(a)
    if a.shape[0] % size == 0 and a.shape[1] % size == 0:
        return block_mean_pool(a, a.shape[0] // size)
    return np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BOX))


def fit_original(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The original rule: top-left square of side k*size, k x k block mean.

    Images with a side under ``size`` (admitted only by a lower ``--min-side``)
    have their top-left square area-resampled up to ``size``.
    """
    h, w = rgb.shape[:2]
    side = original_square_side(h, w, size)
    if side == 0:
        s = min(h, w)
        return area_resize(rgb[:s, :s], size)
    return block_mean_pool(rgb[:side, :side], side // size)


def top_square(h: int, w: int) -> tuple[slice, slice]:
    side = min(h, w)
    left = (w - side) // 2
    return slice(0, side), slice(left, left + side)


def fit_square(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Largest top-anchored, horizontally centred square, area-resampled to size."""
    rows, cols = top_square(*rgb.shape[:2])
    return area_resize(rgb[rows, cols], size)


LETTERBOX_FILL = 128   # mid grey: unlike a white caption bar or a black frame, it is neither


def letterbox_box(h: int, w: int, size: int = SIZE) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an h x w image scaled so its long side is ``size``, centred."""
    scale = size / max(h, w)
    nh, nw = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    return (size - nh) // 2, (size - nw) // 2, nh, nw


def fit_letterbox(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The whole image, aspect kept, long side area-resampled to ``size``, centred on grey."""
    h, w = rgb.shape[:2]
    if h == w:   # nothing to pad: the same pixels as fit_square
        return area_resize(rgb, size)
    top, left, nh, nw = letterbox_box(h, w, size)
    if (nh, nw) == (h, w):
        inner = rgb
    else:
        inner = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((nw, nh), Image.Resampling.BOX))
    out = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    out[top:top + nh, left:left + nw] = inner
    return out


FITS = {"letterbox": fit_letterbox, "square": fit_square, "original": fit_original}
DEFAULT_FIT = "letterbox"   # measured against "square" in the closing note of issue 12
DEPRECATED_NAMES = {"seed": "original"}   # the original method's old name, still accepted


def canonical_fit(name: str) -> str:
    """The current name of a fit (``seed`` is the deprecated name of ``original``)."""
    return DEPRECATED_NAMES.get(name, name)


def fit_image(rgb: np.ndarray, fit: str, size: int = SIZE) -> np.ndarray:
    return FITS[canonical_fit(fit)](rgb, size)


def fit_region(height: int, width: int, fit: str, size: int = SIZE) -> tuple[int, int, int]:
    """(top, left, side): the square, in the picture's own pixels, that ``fit`` turns into the model input.

    For ``letterbox`` the square is the picture's long side, centred, so it
    reaches past the short sides (negative ``top`` or ``left``): that is the
    grey padding. The service uses it to lay a heat map computed on the model
    input back over the whole picture.
    """
    fit = canonical_fit(fit)
    if fit == "original":
        side = original_square_side(height, width, size) or min(height, width)
        return 0, 0, side
    if fit == "letterbox":
        side = max(height, width)
        return -((side - height) // 2), -((side - width) // 2), side
    rows, cols = top_square(height, width)
    return rows.start, cols.start, rows.stop - rows.start


def tiny_to_input(tiny: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A 32x32 picture to the model input by pixel repetition."""
    if tiny.shape[0] != tiny.shape[1] or size % tiny.shape[0]:
        raise ValueError(f"tiny image must be square and divide {size}, got {tiny.shape}")
    return upsample_repeat(tiny, size // tiny.shape[0])
