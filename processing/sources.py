"""Where inputs come from: crawl manifests, labelled folders, tiny-image folders, CIFAR-100.

Each source yields ``Job`` (something to decode) or ``Skip`` (an input that is
already known not to become a row, e.g. a failed crawl record), so every input
is counted exactly once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from . import manifest as manifest_mod
from . import reasons
from .cifar import load_cifar100
from .files import escape_name, walk
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
            yield Job(label=rec.label, source=rec.source, source_id=escape_name(str(rec.source_id)),
                      group=rec.template and escape_name(rec.template), path=rec.path, expected_sha256=rec.sha256)
        else:
            yield Skip(label=rec.label, source=rec.source, source_id=escape_name(str(rec.source_id)),
                       reason=rec.status)


def _group_of(root: Path, path: Path) -> str | None:
    parts = path.relative_to(root).parts
    return escape_name(parts[0]) if len(parts) > 1 else None


def from_folder(root: str | Path, label: int, *, tiny: bool = False,
                count: int | None = None) -> Iterator[Job | Skip]:
    """Every entry under ``root`` (recursively, see ``files.walk``); its first-level subfolder is its group.

    Ids and groups are the escaped relative names (``files.escape_name``);
    the job keeps the real path to read. A subfolder that cannot be listed is
    one ``unreadable`` skip (its id ends in ``/``). With ``count``, a
    deterministic spread-out subset of the files is taken (ordered by a hash
    of the relative path, so classes in subfolders stay balanced).
    """
    root = Path(root)
    files, unlisted = walk(root)
    kind = "tiny" if tiny else "folder"
    source = f"{kind}:{escape_name(root.name)}"
    for d in unlisted:
        yield Skip(label=label, source=source, source_id=escape_name(d.relative_to(root).as_posix()) + "/",
                   reason=reasons.UNREADABLE)
    ids = {path: escape_name(path.relative_to(root).as_posix()) for path in files}
    if count is not None and count < len(files):
        chosen = sorted(files, key=lambda p: hashlib.sha1(ids[p].encode()).digest())[:count]
        files = sorted(chosen)
    for path in files:
        yield Job(label=label, source=source, source_id=ids[path], group=_group_of(root, path), path=str(path),
                  tiny=tiny)


def from_cifar(path: str, count: int, expected_md5: str) -> Iterator[PixelJob]:
    images, ids = load_cifar100(path, count, expected_md5)
    for pixels, source_id in zip(images, ids):
        yield PixelJob(label=NON_MEME, source="cifar100", source_id=source_id, pixels=pixels)
