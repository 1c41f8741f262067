"""Shared fixtures: generated images (never committed) and the real-data location."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEME_SHARED_DATA", ROOT.parent / "shared" / "data"))

needs_shared = pytest.mark.skipif(not (SHARED / "MANIFEST.md").exists(),
                                  reason=f"real data not found at {SHARED} (../shared/data from the repo root)")


def picture(width: int, height: int, seed: int = 0, caption: str | None = "TOP TEXT") -> Image.Image:
    """A random-noise RGB picture, optionally with a white caption bar."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if caption:
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, width, max(1, height // 8)], fill=(255, 255, 255))
        d.text((4, 2), caption, fill=(0, 0, 0))
    return img


def image_bytes(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


@pytest.fixture
def python() -> str:
    return sys.executable
