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

from . import manifest as manifest_mod
from . import reasons
from .cifar import PixelRef, iter_cifar100
from .files import escape_name, walk
from .schema import MEME, NON_MEME


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class PixelJob:
    """Already-decoded 32x32 pixels (CIFAR), read from their spool file by whoever prepares them."""
    label: int
    source: str
    source_id: str
    pixels: PixelRef
    group: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)


@dataclass(frozen=True, slots=True)
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
    """One input per (source, source_id) of the crawl manifests: a job for a stored image, a skip with its reason
    otherwise. Records are resolved and read one at a time (``manifest.winners``), never held."""
    records, torn = manifest_mod.winners(paths)
    for where in torn:   # a crawl killed mid-write: counted, not silently dropped
        yield Skip(label=MEME, source="manifest", source_id=where, reason=reasons.TORN_MANIFEST_LINE)
    for rec in records:
        yield _manifest_input(rec)


def _manifest_input(rec: manifest_mod.Record) -> Job | Skip:
    source_id = escape_name(str(rec.source_id))
    if rec.ok:
        return Job(label=rec.label, source=rec.source, source_id=source_id,
                   group=rec.template and escape_name(rec.template), path=rec.path, expected_sha256=rec.sha256)
    return Skip(label=rec.label, source=rec.source, source_id=source_id, reason=rec.status)


def _group_of(root: Path, path: Path) -> str | None:
    parts = path.relative_to(root).parts
    return escape_name(parts[0]) if len(parts) > 1 else None


def folder_source(root: str | Path, tiny: bool = False, under: str | Path | None = None) -> str:
    """The ``source`` of the rows a folder given to the builder becomes: ``folder:<name>`` or ``tiny:<name>``.

    ``<name>`` is the folder's own name, or with ``under`` its path below that
    folder (``folder:memes/world/hindi/owner_repo``), so that folders of one
    name in different places stay different sources.
    """
    root = Path(root)
    name = root.name
    if under is not None:
        rel = os.path.relpath(os.path.abspath(root), os.path.abspath(under))
        if rel != os.curdir and not rel.startswith(os.pardir):
            name = Path(rel).as_posix()
    return f"{'tiny' if tiny else 'folder'}:{escape_name(name)}"


def from_folder(root: str | Path, label: int, *, tiny: bool = False,
                count: int | None = None, source_root: str | Path | None = None) -> Iterator[Job | Skip]:
    """Every entry under ``root`` (recursively, see ``files.walk``); its first-level subfolder is its group.

    Ids and groups are the escaped relative names (``files.escape_name``);
    the job keeps the real path to read. A subfolder that cannot be listed is
    one ``unreadable`` skip (its id ends in ``/``). With ``count``, a
    deterministic spread-out subset of the files is taken (ordered by a hash
    of the relative path, so classes in subfolders stay balanced). With
    ``source_root`` the source is named by the folder's path below it
    (``folder_source``).
    """
    root = Path(root)
    files, unlisted = walk(root)
    source = folder_source(root, tiny, source_root)
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


def from_cifar(path: str, count: int, expected_md5: str, spool_dir: str | Path) -> Iterator[PixelJob]:
    for source_id, pixels in iter_cifar100(path, count, spool_dir, expected_md5):
        yield PixelJob(label=NON_MEME, source="cifar100", source_id=source_id, pixels=pixels)
