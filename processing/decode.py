"""Bytes to an RGB uint8 array, or a ``Rejected`` with the reason."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .reasons import (CORRUPT, DECOMPRESSION_BOMB, NOT_AN_IMAGE, TRUNCATED,
                      Rejected)

DEFAULT_MAX_PIXELS = 64_000_000  # ~8000x8000; larger is treated as a decompression bomb

# The cap is the caller's max_pixels, checked from the header before any pixel is decoded; Pillow's own
# process-wide cap (89,478,485 px, an error at twice that) would otherwise override a larger max_pixels.
Image.MAX_IMAGE_PIXELS = None

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass
class Decoded:
    rgb: np.ndarray      # (H, W, 3) uint8
    animated: bool       # more than one frame; ``rgb`` is the first
    format: str | None


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode to RGB uint8: alpha composited on white, 16-bit scaled."""
    if img.mode in _SIXTEEN_BIT:
        a = np.asarray(img).astype(np.float64)
        if img.mode != "I" or a.max(initial=0) > 255:
            a = a / 257.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if img.mode == "F":
        g = np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        img = background
    elif img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.uint8)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Pillow's notes on odd files (corrupt EXIF, ...): the outcome is the record
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise Rejected(DECOMPRESSION_BOMB, f"{w}x{h} exceeds {max_pixels} pixels")
            animated = getattr(img, "n_frames", 1) > 1
            fmt = img.format
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return Decoded(rgb=to_rgb(img), animated=animated, format=fmt)
    except Rejected:
        raise
    except UnidentifiedImageError:
        raise Rejected(NOT_AN_IMAGE) from None
    except OSError as exc:
        reason = TRUNCATED if "truncated" in str(exc).lower() else CORRUPT
        raise Rejected(reason, str(exc)) from None
    except (ValueError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        raise Rejected(CORRUPT, f"{type(exc).__name__}: {exc}") from None


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str, bool]:
    """Fully decode to prove the bytes are an image; return (width, height, format, animated)."""
    decoded = decode_image(data, max_pixels=max_pixels)
    h, w = decoded.rgb.shape[:2]
    return w, h, decoded.format or "", decoded.animated
