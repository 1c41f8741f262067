"""Streaming, resumable HDF5 writer.

Rows are appended in batches to resizable datasets; after each batch the file
is flushed and ``rows_committed`` advanced, so a build stopped between batches
can ``--resume`` by truncating to the last commit. The file only gets its final
name once ``finalize`` has written the splits and attributes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .schema import SPLIT_NAMES, dataset_attrs

STR = h5py.string_dtype("utf-8")
COMMIT_EVERY = 256   # rows (and skips) per commit: bounds memory and the work lost to a kill

# name -> (dtype, per-row shape); images get their shape from the size
_ROW_FIELDS = {
    "labels": (np.uint8, ()),
    "source": (STR, ()),
    "source_id": (STR, ()),
    "group": (STR, ()),
    "sha256": ("S64", ()),
    "animated": (np.uint8, ()),
}
_SKIP_FIELDS = {"source": STR, "source_id": STR, "reason": STR, "label": np.uint8}


class PartialBuildError(Exception):
    pass


class OutputBusy(Exception):
    pass


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` (``flock``, exclusive) for the body; ``OutputBusy`` at once if another build holds it.

    The lock file is removed on the way out. A build that opened the file just
    before it was removed would lock a file no longer at that path, so the
    lock counts only if the path still names the locked file (else: retry).
    OSError if the lock cannot be created (the folder is not writable).
    """
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"another build is writing {out} (it holds {path}); wait for it to finish") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


class H5Writer:
    """Appends rows and skips to ``<out>.partial`` in committed batches; ``finalize`` renames it to ``out``.

    ``resume=True`` reopens an existing partial file built with the same
    ``params`` and truncates it to its last commit.
    """

    def __init__(self, out: Path, *, size: int, compression: str | None, params: dict, resume: bool,
                 checksum: bool = True):
        self.out = Path(out)
        self.path = partial_path(self.out)
        self.size = size
        self.params = params
        if resume and self.path.exists():
            self._open_existing()
        else:
            self._create(compression, checksum)
        # one buffer for the pending images, reused by every commit: a fresh 12 MB stack per commit made glibc
        # raise its mmap threshold and the builder's heap grew with the number of rows (~25 MB at full size)
        self._images = np.empty((COMMIT_EVERY, size, size, 3), np.uint8)
        self._pending_rows: list = []
        self._pending_skips: list = []

    # ---- setup -------------------------------------------------------------
    def _create(self, compression: str | None, checksum: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.path, "w")
        s = self.size
        kw = {"compression": compression} if compression else {}
        # fletcher32: a Fletcher-32 checksum per image chunk, verified on every read (a flipped byte in an image
        # is an error, not a silently wrong picture); benchmarks/h5_checksum.py measures its cost on the stream
        self.f.create_dataset("images", shape=(0, s, s, 3), maxshape=(None, s, s, 3), dtype=np.uint8,
                              chunks=(1, s, s, 3), fletcher32=checksum, **kw)
        for name, (dtype, shape) in _ROW_FIELDS.items():
            self.f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(4096,))
        skipped = self.f.create_group("skipped")
        for name, dtype in _SKIP_FIELDS.items():
            skipped.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
        self.f.attrs["params"] = json.dumps(self.params, sort_keys=True)
        self.f.attrs["rows_committed"] = 0
        self.f.attrs["skips_committed"] = 0
        self.f.flush()

    def _open_existing(self) -> None:
        try:
            self.f = h5py.File(self.path, "r+")
            stored = json.loads(self.f.attrs["params"])
        except (OSError, KeyError, ValueError) as exc:
            raise PartialBuildError(f"partial build {self.path} is unreadable ({exc}); start over with --overwrite") from None
        if stored != self.params:
            raise PartialBuildError(f"partial build {self.path} used other parameters; rerun with the same options or --overwrite")
        rows, skips = int(self.f.attrs["rows_committed"]), int(self.f.attrs["skips_committed"])
        for name in ("images", *_ROW_FIELDS):
            self.f[name].resize(rows, axis=0)
        for name in _SKIP_FIELDS:
            self.f["skipped"][name].resize(skips, axis=0)

    # ---- state -------------------------------------------------------------
    @property
    def rows(self) -> int:
        return int(self.f.attrs["rows_committed"])

    def done_keys(self) -> Iterator[tuple[str, str]]:
        """The (source, source_id) of every committed row and skip."""
        for group in (self.f, self.f["skipped"]):
            yield from zip(_strings(group["source"]), _strings(group["source_id"]))

    def column(self, name: str, group: str | None = None) -> Iterator[str]:
        """A string column's values, streamed."""
        return _strings((self.f[group] if group else self.f)[name])

    def counts(self, name: str, group: str | None = None) -> Counter[str]:
        """How often each value of a string column occurs."""
        return Counter(self.column(name, group))

    # ---- appending ---------------------------------------------------------
    def add_row(self, image, label, source, source_id, group, sha256, animated) -> None:
        if len(self._pending_rows) == COMMIT_EVERY:
            self.commit()
        self._images[len(self._pending_rows)] = image
        self._pending_rows.append((label, source, source_id, group or "", sha256, animated))

    def add_skip(self, source, source_id, reason, label) -> None:
        self._pending_skips.append((source, source_id, reason, label))

    def commit(self) -> None:
        """Write what is pending, then advance the committed counters and flush."""
        if self._pending_rows:
            n0 = self.rows
            images = self.f["images"]
            images.resize(n0 + len(self._pending_rows), axis=0)
            images[n0:] = self._images[:len(self._pending_rows)]
            _append(self.f, tuple(_ROW_FIELDS), self._pending_rows, n0)
            self.f.attrs["rows_committed"] = n0 + len(self._pending_rows)
            self._pending_rows = []
        if self._pending_skips:
            m0 = int(self.f.attrs["skips_committed"])
            _append(self.f["skipped"], tuple(_SKIP_FIELDS), self._pending_skips, m0)
            self.f.attrs["skips_committed"] = m0 + len(self._pending_skips)
            self._pending_skips = []
        self.f.flush()

    # ---- finishing ---------------------------------------------------------
    def end_rows(self) -> None:
        """Commit what is pending and let the image buffer go (no row can be added after)."""
        self.commit()
        self._images = None

    def finalize(self, splits: np.ndarray, *, fit: str, params: dict, counts: dict) -> None:
        """Write the splits and the file attributes, close, and give the file its final name."""
        self.commit()
        if "split" in self.f:
            del self.f["split"]
        write_split(self.f, splits)
        self.f.attrs.update(dataset_attrs(fit=fit, params=params, counts=counts))
        self.f.close()
        os.replace(self.path, self.out)

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def labels(self) -> np.ndarray:
        return self.f["labels"][:]


def write_split(f: h5py.File, splits: np.ndarray) -> None:
    ds = f.create_dataset("split", data=np.asarray(splits, dtype=np.uint8), chunks=True)
    ds.attrs["names"] = json.dumps(SPLIT_NAMES)


def _append(group, names, rows: list[tuple], start: int) -> None:
    for name, values in zip(names, zip(*rows)):
        ds = group[name]
        ds.resize(start + len(rows), axis=0)
        if h5py.check_vlen_dtype(ds.dtype) is str:
            ds[start:] = np.array(values, dtype=object)
        else:
            ds[start:] = np.asarray(values, dtype=ds.dtype)


def _strings(ds, block: int = 4096) -> Iterator[str]:
    """A string column's values, read a block at a time."""
    for start in range(0, len(ds), block):
        for s in ds[start:start + block]:
            yield s.decode() if isinstance(s, bytes) else s
