"""Read the Meme Generator data set file in any of its published shapes.

Kaggle/LoC ship UTF-16 (BOM) tab-separated text; copies circulate as UTF-8
CSV. Encoding comes from the BOM (else UTF-8), the delimiter from the header
line; columns are matched by name, case- and space-insensitively.

A file that cannot be a Meme Generator list (missing, a folder, empty,
binary, wrong columns) raises ``CsvError`` with one line. A single bad row
(undecodable bytes, a NUL byte, a field over csv's size limit, no MD5 or an MD5
that is not 32 hex digits, no size or one that is not a whole number, no id) is
still yielded, with ``problem`` saying what is wrong and ``line`` where, so the
crawler records it as ``bad_row`` without a request and the rows after it are
read: a row without its MD5 and size could not be verified.

``with_repeats`` marks the later rows of a Meme ID listed more than once.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from processing.files import FOLDER, MISSING, escape_name, not_regular

from .spiderargs import excerpt

DISPLAY = {"meme_id": "Meme ID", "archived_url": "Archived URL", "base_meme_name": "Base Meme Name",
           "md5": "MD5 Hash", "size": "File Size (In Bytes)"}
REQUIRED = {
    "meme_id": ("meme id",),
    "archived_url": ("archived url",),
    "base_meme_name": ("base meme name",),
    "md5": ("md5 hash",),
    "size": ("file size (in bytes)", "file size"),
}
OPTIONAL = {
    "page_url": ("meme page url",),
    "alt_text": ("alternate text",),
}


GET_IT = ("download the Meme Generator data set (57,652 rows) from the Library of Congress "
          "(https://www.loc.gov/item/2018655052/) or Kaggle (\"Meme Generator Data Set\"), see datasets/meme_generator.md")
_MD5 = re.compile(r"[0-9a-f]{32}")
MEME_ID = re.compile(r"[0-9]+")   # every Meme ID of the published files is a whole number
_BAD = "\udcff"   # stands for undecodable bytes; never produced by a strict decode


def _mark_undecodable(err: UnicodeDecodeError):
    return _BAD, err.end


codecs.register_error("meme_csv_mark", _mark_undecodable)


class CsvError(Exception):
    pass


@dataclass(frozen=True)
class MemeRow:
    meme_id: str
    archived_url: str
    base_meme_name: str
    md5: str
    size: int | None
    page_url: str = ""
    alt_text: str = ""
    line: int = 0                    # physical line in the file (the header is line 1)
    problem: str = ""                # why the row cannot be used, when it cannot
    repeat_of: int = 0               # the line of an earlier row that is this same row (listed again)
    duplicate_of: int = 0            # the line of an earlier row with this Meme ID and other contents


def sniff_encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return "utf-8"


def csv_records(lines: Iterable[str], delimiter: str = ",") -> Iterator[tuple[int, list[str], str]]:
    """(line, values, error) for each CSV record of ``lines``; ``line`` is its last physical line (1: the first).

    A record csv cannot read (a field over ``csv.field_size_limit()``, 131,072 characters, csv's guard on
    memory) comes with ``error`` set and ``values`` split from its first line at every delimiter (quotes not
    interpreted): csv drops the rest of that line and reads on from the next one, so the records after it
    are not lost.
    """
    first: list[str] = []                  # the first physical line of the record being read

    def tracked():
        for text in lines:
            if not first:
                first.append(text)
            yield text

    reader = csv.reader(tracked(), delimiter=delimiter)
    while True:
        first.clear()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, first[0].rstrip("\r\n").split(delimiter), str(exc)
        else:
            yield reader.line_num, values, ""


def shortened(values: list[str]) -> list[str]:
    """``values`` with each field over csv's size limit replaced by its excerpt (records stay small)."""
    limit = csv.field_size_limit()
    return [v if len(v) <= limit else excerpt(v) for v in values]


def _norm(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").strip().lower().split())


def _column_map(header: list[str]) -> dict[str, int]:
    normalized = [_norm(h) for h in header]
    found: dict[str, int] = {}
    for field, names in {**REQUIRED, **OPTIONAL}.items():
        for name in names:
            if name in normalized:
                found[field] = normalized.index(name)
                break
    missing = [DISPLAY[f] for f in REQUIRED if f not in found]
    if missing:
        got = ", ".join(header)
        got = got if len(got) <= 120 else f"{got[:120]}... ({len(got):,} characters)"
        raise CsvError(f"missing column(s) {', '.join(repr(m) for m in missing)}; "
                       f"expected the Meme Generator columns (Meme ID, Archived URL, Base Meme Name, "
                       f"Meme Page URL, MD5 Hash, File Size (In Bytes), Alternate Text), got: {got!r}")
    return found


def printable(text: str) -> str:
    """``text`` with the marks of undecodable bytes shown as U+FFFD (safe to write as UTF-8)."""
    return text.replace(_BAD, "\ufffd")


def _open_checked(path: Path) -> tuple[str, str]:
    """(encoding, header line) of a file that can be a Meme Generator list, else CsvError."""
    name = escape_name(str(path))
    kind = not_regular(path)
    if kind == MISSING:
        raise CsvError(f"CSV not found: {name}; {GET_IT}, and put it there or pass -a csv=PATH")
    if kind == FOLDER:
        raise CsvError(f"{name} is a folder, not the Meme Generator file; {GET_IT}")
    if kind:
        raise CsvError(f"{name} is {kind}, not a regular file: expected the Meme Generator file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    encoding = sniff_encoding(head)
    if not head.decode(encoding, "ignore").lstrip("\ufeff").strip():   # nothing, or only a byte-order mark
        raise CsvError(f"{name} is empty: expected the Meme Generator file; {GET_IT}")
    with open(path, encoding=encoding, newline="", errors="meme_csv_mark") as fh:
        first = fh.readline()
    if _BAD in first or "\x00" in first:
        raise CsvError(f"{name} is not a text file (its first line is not {encoding} text): "
                       f"expected the Meme Generator CSV/TSV")
    return encoding, first


def _row_problem(row: MemeRow, raw_size: str, raw_md5: str) -> str:
    values = (row.meme_id, row.archived_url, row.base_meme_name, raw_md5, raw_size, row.page_url, row.alt_text)
    if any(_BAD in v for v in values):
        return f"undecodable bytes on line {row.line}"
    if any("\x00" in v for v in values):
        return f"a NUL byte on line {row.line} (binary data in the file?)"
    if not row.meme_id:
        return f"no Meme ID on line {row.line}"
    missing = [DISPLAY[f] for f, raw in (("md5", raw_md5), ("size", raw_size)) if not raw]
    if missing:
        return f"no {' and no '.join(missing)} on line {row.line}: the image could not be verified"
    if raw_md5 and not _MD5.fullmatch(raw_md5.lower()):
        return f"MD5 Hash is not 32 hex digits on line {row.line}: {raw_md5[:40]!r}"
    if raw_size and not raw_size.isdigit():
        return f"File Size is not a whole number on line {row.line}: {raw_size[:40]!r}"
    return ""


def read_meme_csv(path: str | Path) -> Iterator[MemeRow]:
    path = Path(path)
    encoding, first = _open_checked(path)
    with open(path, encoding=encoding, newline="", errors="meme_csv_mark") as fh:
        fh.readline()
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        header = next(csv.reader(io.StringIO(first), delimiter=delimiter))
        cols = _column_map(header)
        for line, values, error in csv_records(fh, delimiter):
            line += 1                                    # the header was line 1
            if not any(v.strip() for v in values):
                continue
            values = shortened(values) if error else values
            get = lambda f: values[cols[f]].strip() if f in cols and cols[f] < len(values) else ""  # noqa: E731
            size, md5 = get("size"), get("md5")
            row = MemeRow(meme_id=get("meme_id"), archived_url=get("archived_url"),
                          base_meme_name=get("base_meme_name"), md5=md5.lower(),
                          size=int(size) if size.isdigit() else None,
                          page_url=get("page_url"), alt_text=get("alt_text"), line=line)
            problem = f"unreadable row on line {line}: {error}" if error else _row_problem(row, size, md5)
            yield dataclasses.replace(row, problem=problem) if problem else row


CONTENTS = ("meme_id", "archived_url", "base_meme_name", "md5", "size", "page_url", "alt_text")


def same_contents(a: MemeRow, b: MemeRow) -> bool:
    """Whether two rows say the same thing (wherever they are in the file)."""
    return all(getattr(a, f) == getattr(b, f) for f in CONTENTS)


def repeated_ids(rows: Iterable[MemeRow]) -> set[int]:
    """The hashes of the Meme IDs on more than one of ``rows`` (counted in 8 bytes a row)."""
    hashes = np.fromiter((hash(row.meme_id) for row in rows), dtype=np.int64)
    values, counts = np.unique(hashes, return_counts=True)
    return set(values[counts > 1].tolist())


def with_repeats(read: Callable[[], Iterable[MemeRow]]) -> Iterator[MemeRow]:
    """The rows of ``read()``, each later row of a Meme ID listed before marked with that first row's line:
    ``repeat_of`` when it is the same row again, ``duplicate_of`` when its contents differ.

    Two passes over ``read()``: the first counts the IDs, the second holds only the first row of each
    repeated ID, so memory stays flat in the number of rows.
    """
    repeated = repeated_ids(read())
    first: dict[str, MemeRow] = {}
    for row in read():
        earlier = first.setdefault(row.meme_id, row) if hash(row.meme_id) in repeated else row
        if earlier is row:
            yield row
        elif same_contents(earlier, row):
            yield dataclasses.replace(row, repeat_of=earlier.line)
        else:
            yield dataclasses.replace(row, duplicate_of=earlier.line)


def validate_csv(path: str | Path) -> None:
    """Raise CsvError early (a readable text file whose header has the columns)."""
    rows = read_meme_csv(path)
    next(rows, None)
