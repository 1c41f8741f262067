"""The crawl manifest: JSON Lines, one record per input row or crawled item.

The crawler appends a record as each item completes; ``processing.build_h5``
reads any number of manifests. ``path`` is stored relative to the manifest's
own folder so a crawl directory can be moved or shared between machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import reasons
from .digestset import DigestSet
from .files import FOLDER, MISSING, escape_name, not_regular
from .schema import MEME, NON_MEME

SCHEMA_VERSION = 1


class ManifestChanged(Exception):
    """A manifest was rewritten between the two passes of ``winners``."""


@dataclass
class Record:
    source: str                      # crawler that produced it: "loc_archive", "imgur", ...
    source_id: str                   # the row's id within that source (Meme ID, imgur id)
    status: str                      # "ok" or a reason from processing.reasons
    label: int = 1                   # 1 meme, 0 non-meme
    path: str | None = None          # stored original bytes, relative to the manifest folder
    sha256: str | None = None        # of the stored bytes
    md5: str | None = None           # of the stored bytes
    expected_md5: str | None = None  # what the input row promised, when it did
    url: str | None = None           # the URL the input row pointed at
    page_url: str | None = None      # the page the image was shown on (Meme Generator's "Meme Page URL")
    capture_url: str | None = None   # the URL the bytes finally came from
    template: str | None = None      # base meme name: the group for leakage-free splits
    alt_text: str | None = None
    title: str | None = None
    tags: list[str] | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    animated: bool | None = None
    detail: str | None = None        # human-readable context for a failure
    attempts: list[dict] | None = None  # every candidate tried: [{"url", "status"}], in order
    time: float = field(default_factory=time.time)
    schema: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, str(self.source_id))

    @property
    def ok(self) -> bool:
        return self.status == reasons.OK

    @property
    def final(self) -> bool:
        return reasons.is_final(self.status)

    def to_json(self) -> str:
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        """The record of a parsed line; TypeError if a field a reader relies on has the wrong type, ValueError
        if its status is not in the vocabulary (``processing.reasons``)."""
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        names = {f.name for f in dataclasses.fields(cls)}
        rec = cls(**{k: v for k, v in data.items() if k in names})
        for name, types in _FIELD_TYPES.items():
            if not isinstance(getattr(rec, name), types):
                raise TypeError(f"{name} is a {type(getattr(rec, name)).__name__}")
        if not reasons.is_known(rec.status):
            raise ValueError(f"unknown status {rec.status!r}")
        if rec.label not in (MEME, NON_MEME):
            raise ValueError(f"label {rec.label!r} is neither {NON_MEME} nor {MEME}")
        for name in ("source", "source_id", "path"):
            value = getattr(rec, name)
            if isinstance(value, str):
                try:   # a lone surrogate from a JSON escape: no file name or digest can hold it
                    value.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    raise ValueError(f"{name} holds an unpaired surrogate") from None
                if "\x00" in value:
                    raise ValueError(f"{name} holds a NUL character")
        if rec.ok and not rec.path:
            raise ValueError("status ok but no stored file (path)")
        try:
            finite = math.isfinite(rec.time)
        except OverflowError:
            finite = False
        if not finite:   # NaN or infinity would make "the newer record wins" undefined
            raise ValueError(f"time {rec.time!r} is not a finite number")
        return rec


_OPTIONAL_STR = (str, type(None))
# the fields the builder, resume and the feeder read: a line with another type there is not a record
_FIELD_TYPES = {"source": str, "source_id": (str, int), "status": str, "label": int, "path": _OPTIONAL_STR,
                "sha256": _OPTIONAL_STR, "template": _OPTIONAL_STR, "time": (int, float)}


class ManifestWriter:
    """Append-only JSONL writer; every record is flushed as it is written.

    A process killed mid-write can leave at most one torn last line, which the
    reader skips and counts.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: Record) -> None:
        if record.path and os.path.isabs(record.path):
            record.path = os.path.relpath(record.path, self.path.parent)
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class ManifestSet:
    """The resolved view of many manifests: one record per (source, source_id)."""

    records: dict[tuple[str, str], Record]
    torn_lines: list[str] = field(default_factory=list)   # "file:line" of lines that did not parse


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Manifest arguments may be files or folders of ``*.jsonl`` files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():   # only regular files: a FIFO would block the read, a folder or dangling link fail it
            out.extend(sorted(f for f in p.glob("*.jsonl") if not_regular(f) is None))
        else:
            out.append(p)
    return out


def manifest_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a manifest argument (a special file, a file that is not JSON Lines records), or None.

    Only the first non-empty line of each file is read: a torn line later on is a killed crawl's, counted
    by the build; a file whose very first record does not parse was never a manifest.
    """
    kind = not_regular(path)
    if kind == FOLDER:
        odd = next(((f, k) for f in sorted(Path(path).glob("*.jsonl")) if (k := not_regular(f))), None)
        if odd:
            what = "a link to nothing" if odd[1] == MISSING else odd[1]
            return f"holds {escape_name(odd[0].name)}, {what}, not a manifest file: remove it"
        return None
    if kind:
        return f"{kind}, not a regular file or folder"
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    data = json.loads(line)
                except ValueError:
                    data = None
                if not (isinstance(data, dict) and "source" in data and "status" in data):
                    return "not a crawl manifest (its first line is not a JSON record with source and status)"
                break
    return None


KEY_DIGEST = "S20"   # ``key_digest`` in NumPy: fixed width, so arrays sort and compare the digests themselves


def key_digest(key: tuple[str, str]) -> bytes:
    """SHA-1 of a (source, source_id) key: 20 bytes that stand for the key in NumPy arrays."""
    return hashlib.sha1(f"{key[0]}\x00{key[1]}".encode("utf-8", "surrogateescape")).digest()


def _parse(line: bytes, path: Path) -> Record | None:
    """The record of one line with an absolute path; ``None`` for a torn line."""
    try:
        rec = Record.from_dict(json.loads(line.decode("utf-8", errors="replace")))
    except (ValueError, TypeError, RecursionError):   # not JSON (or nested too deep to parse), or not a record
        return None
    if rec.path and not os.path.isabs(rec.path):
        rec.path = os.path.normpath(os.path.join(path.parent, rec.path))
    return rec


def _lines(path: Path) -> Iterator[tuple[int, int, Record | None]]:
    """(line number, byte offset, record or ``None`` if torn) of each non-blank line of one manifest."""
    with open(path, "rb") as fh:
        offset = 0
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, offset, _parse(line, path)
            offset += len(line)


def iter_records(path: Path) -> Iterator[Record | None]:
    """Records of one manifest with absolute paths; ``None`` for a torn line."""
    for _, _, rec in _lines(path):
        yield rec


def _precedence(rec: Record) -> tuple[bool, float]:
    """Of two records of one key, the one with the larger precedence wins, the later one on a tie:
    a stored image beats any failure; otherwise the newer record wins."""
    return rec.ok, rec.time


@dataclass
class _Scan:
    """The first pass over manifests: per record its key digest, precedence, finality and place (42 bytes)."""

    files: list[Path]
    torn: list[str]
    digests: np.ndarray
    is_ok: np.ndarray
    times: np.ndarray
    final: np.ndarray
    file_nos: np.ndarray
    offsets: np.ndarray

    def winners(self) -> np.ndarray:
        """The index of each key's winning record (``_precedence``, the later on a tie)."""
        order = np.lexsort((np.arange(len(self.digests)), self.times, self.is_ok, self.digests))
        keys = self.digests[order]
        return order[np.r_[keys[1:] != keys[:-1], True]] if len(order) else order


def _scan(paths: Iterable[str | os.PathLike], source: str | None = None) -> _Scan:
    """Every record's digest, precedence, finality and place; with ``source``, only that source's records."""
    files = expand_paths(paths)
    digests, is_ok, final, times = bytearray(), bytearray(), bytearray(), array("d")
    file_nos, offsets = array("i"), array("q")
    torn: list[str] = []
    for file_no, path in enumerate(files):
        for lineno, offset, rec in _lines(path):
            if rec is None:
                torn.append(f"{path.name}:{lineno}")
                continue
            if source is not None and rec.source != source:
                continue
            ok, time_ = _precedence(rec)
            digests += key_digest(rec.key)
            is_ok.append(ok)
            final.append(rec.final)
            times.append(time_)
            file_nos.append(file_no)
            offsets.append(offset)
    return _Scan(files, torn, np.frombuffer(bytes(digests), KEY_DIGEST), np.frombuffer(is_ok, bool),
                 np.frombuffer(times), np.frombuffer(final, bool), np.frombuffer(file_nos, np.int32),
                 np.frombuffer(offsets, np.int64))


def winners(paths: Iterable[str | os.PathLike]) -> tuple[Iterator[Record], list[str]]:
    """The winning record of each key (``_precedence``), streamed, and the "file:line" of each torn line.

    A first pass notes each record's key digest, precedence and place in its
    file (``_scan``); the winners are then read again one at a time, so memory
    stays flat however many records the manifests hold (a full-size build's
    68,000 records as resolved objects were ~44 MB).
    """
    scan = _scan(paths)
    won = scan.winners()
    file_nos, offsets = scan.file_nos[won], scan.offsets[won]

    def read_again() -> Iterator[Record]:
        for file_no, path in enumerate(scan.files):
            with open(path, "rb") as fh:
                for offset in np.sort(offsets[file_nos == file_no]):
                    fh.seek(int(offset))
                    rec = _parse(fh.readline(), path)
                    if rec is None:
                        raise ManifestChanged(f"{escape_name(str(path))} changed while it was read; build again")
                    yield rec

    return read_again(), scan.torn


def final_digests(paths: Iterable[str | os.PathLike], source: str | None = None) -> DigestSet:
    """The digests (``key_digest``) of the keys whose winning record is final: what a resumed crawl skips.

    With ``source``, only that source's keys: an imgur crawl beside a finished
    archive crawl holds none of the archive's 57,652 keys.
    """
    scan = _scan(paths, source)
    won = scan.winners()
    return DigestSet(scan.digests[won][scan.final[won]], width=np.dtype(KEY_DIGEST).itemsize)


def records_frame(resolved: ManifestSet):
    """The resolved records as a pandas DataFrame, one row per (source, source_id)."""
    import pandas as pd

    rows = [dataclasses.asdict(r) for r in resolved.records.values()]
    columns = [f.name for f in dataclasses.fields(Record)]
    return pd.DataFrame(rows, columns=columns)


def status_counts(resolved: ManifestSet):
    """Records per source (rows) and status (columns, ``ok`` first), as a pandas DataFrame of counts."""
    frame = records_frame(resolved)
    table = frame.groupby(["source", "status"]).size().unstack(fill_value=0)
    return table[sorted(table.columns, key=lambda s: (s != reasons.OK, s))]


def read_manifests(paths: Iterable[str | os.PathLike]) -> ManifestSet:
    records, torn = winners(paths)
    return ManifestSet(records={rec.key: rec for rec in records}, torn_lines=torn)
