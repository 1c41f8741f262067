"""Where inputs come from: crawl manifests, labelled folders, tiny-image folders, CIFAR-100.

Each source yields ``Job`` (something to decode) or ``Skip`` (an input that is
already known not to become a row, e.g. a failed crawl record), so every input
is counted exactly once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from . import manifest as manifest_mod
from . import reasons
from .cifar import load_cifar100
from .schema import MEME, NON_MEME


@dataclass(frozen=True)
class Job:
    label: int
    source: str
    source_id: str
    group: str | None = None
    path: str | None = None              # a file to decode
    tiny: bool = False                   # decode, require 32x32, upsample x4
    expected_sha256: str | None = None   # from the manifest, checked on read

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)


@dataclass(frozen=True)
class PixelJob:
    """Already-decoded 32x32 pixels (CIFAR); prepared in the main process."""
    label: int
    source: str
    source_id: str
    pixels: np.ndarray
    group: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)


@dataclass(frozen=True)
class Skip:
    label: int
    source: str
    source_id: str
    reason: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)


Input = Union[Job, PixelJob, Skip]


def from_manifests(paths: list[str]) -> Iterator[Input]:
    resolved = manifest_mod.read_manifests(paths)
    for where in resolved.torn_lines:   # a crawl killed mid-write: counted, not silently dropped
        yield Skip(label=MEME, source="manifest", source_id=where, reason=reasons.TORN_MANIFEST_LINE)
    for key in sorted(resolved.records):
        rec = resolved.records[key]
        if rec.ok:
            yield Job(label=rec.label, source=rec.source, source_id=str(rec.source_id),
                      group=rec.template, path=rec.path, expected_sha256=rec.sha256)
        else:
            yield Skip(label=rec.label, source=rec.source, source_id=str(rec.source_id), reason=rec.status)


def _walk_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files


def _group_of(root: Path, path: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def from_folder(root: str | Path, label: int, *, tiny: bool = False, count: int | None = None) -> Iterator[Job]:
    """Every file under ``root`` (recursively); its first-level subfolder is its group.

    With ``count``, a deterministic spread-out subset is taken (ordered by a
    hash of the relative path, so classes in subfolders stay balanced).
    """
    root = Path(root)
    files = _walk_files(root)
    if count is not None and count < len(files):
        chosen = sorted(files, key=lambda p: hashlib.sha1(str(p.relative_to(root)).encode()).digest())[:count]
        files = sorted(chosen)
    kind = "tiny" if tiny else "folder"
    for path in files:
        rel = path.relative_to(root).as_posix()
        yield Job(label=label, source=f"{kind}:{root.name}", source_id=rel,
                  group=_group_of(root, path), path=str(path), tiny=tiny)


def from_cifar(path: str, count: int, expected_md5: str) -> Iterator[PixelJob]:
    images, ids = load_cifar100(path, count, expected_md5)
    for pixels, source_id in zip(images, ids):
        yield PixelJob(label=NON_MEME, source="cifar100", source_id=source_id, pixels=pixels)
