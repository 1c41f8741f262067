"""One input to one 128x128x3 row (or a reason): the work a build worker does."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from . import reasons
from .decode import DEFAULT_MAX_PIXELS, decode_image
from .files import DEFAULT_MAX_BYTES, read_capped
from .reasons import Rejected
from .sources import Job, PixelJob
from .schema import INPUT_SIZE as SIZE
from .schema import TINY_SIZE as TINY
from .transform import DEFAULT_FIT, fit_image, tiny_to_input


@dataclass(frozen=True)
class Options:
    fit: str = DEFAULT_FIT
    size: int = SIZE
    min_side: int = SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass
class Row:
    job: Job | PixelJob
    image: np.ndarray | None = None   # (size, size, 3) uint8
    sha256: str | None = None          # of the original bytes (of the raw pixels for CIFAR)
    animated: bool = False
    reason: str | None = None
    detail: str = ""


def prepare(job: Job, options: Options) -> Row:
    try:
        data = read_capped(job.path, options.max_bytes)
    except Rejected as exc:
        return Row(job, reason=exc.reason, detail=exc.detail)
    sha256 = hashlib.sha256(data).hexdigest()
    if job.expected_sha256 and job.expected_sha256 != sha256:
        return Row(job, sha256=sha256, reason=reasons.SHA256_MISMATCH)
    try:
        decoded = decode_image(data, max_pixels=options.max_pixels)
    except Rejected as exc:
        return Row(job, sha256=sha256, reason=exc.reason, detail=exc.detail)
    rgb = decoded.rgb
    h, w = rgb.shape[:2]
    if job.tiny:
        if (h, w) != (TINY, TINY):
            return Row(job, sha256=sha256, reason=reasons.WRONG_SIZE, detail=f"{w}x{h}, expected 32x32")
        image = tiny_to_input(rgb, options.size)
    else:
        if min(h, w) < options.min_side:
            return Row(job, sha256=sha256, reason=reasons.TOO_SMALL, detail=f"{w}x{h}")
        image = fit_image(rgb, options.fit, options.size)
    return Row(job, image=image, sha256=sha256, animated=decoded.animated)


def prepare_pixels(job: PixelJob, options: Options) -> Row:
    pixels = np.ascontiguousarray(job.pixels.read())
    return Row(job, image=tiny_to_input(pixels, options.size), sha256=hashlib.sha256(pixels.tobytes()).hexdigest())


def prepare_any(job: Job | PixelJob, options: Options) -> Row:
    return prepare_pixels(job, options) if isinstance(job, PixelJob) else prepare(job, options)


def prepare_chunk(jobs: list[Job | PixelJob], options: Options) -> list[Row]:
    """Process-pool entry point: a chunk amortises the inter-process round trip."""
    return [prepare_any(job, options) for job in jobs]
