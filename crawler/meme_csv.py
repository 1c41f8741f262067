"""Read the Meme Generator data set file in any of its published shapes.

Kaggle/LoC ship UTF-16 (BOM) tab-separated text; copies circulate as UTF-8
CSV. Encoding comes from the BOM (else UTF-8), the delimiter from the header
line; columns are matched by name, case- and space-insensitively.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


def sniff_encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return "utf-8"


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
        raise CsvError(f"missing column(s) {', '.join(repr(m) for m in missing)}; "
                       f"expected the Meme Generator columns (Meme ID, Archived URL, Base Meme Name, "
                       f"Meme Page URL, MD5 Hash, File Size (In Bytes), Alternate Text), got {header}")
    return found


def read_meme_csv(path: str | Path) -> Iterator[MemeRow]:
    path = Path(path)
    if not path.is_file():
        raise CsvError(f"CSV not found: {path} (download the Meme Generator data set, see datasets/meme_generator.md)")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    encoding = sniff_encoding(head)
    with open(path, encoding=encoding, newline="") as fh:
        first = fh.readline()
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        header = next(csv.reader(io.StringIO(first), delimiter=delimiter))
        cols = _column_map(header)
        for values in csv.reader(fh, delimiter=delimiter):
            if not any(v.strip() for v in values):
                continue
            get = lambda f: values[cols[f]].strip() if f in cols and cols[f] < len(values) else ""  # noqa: E731
            size = get("size")
            yield MemeRow(meme_id=get("meme_id"), archived_url=get("archived_url"),
                          base_meme_name=get("base_meme_name"), md5=get("md5").lower(),
                          size=int(size) if size.isdigit() else None,
                          page_url=get("page_url"), alt_text=get("alt_text"))


def validate_csv(path: str | Path) -> None:
    """Raise CsvError early (file present, header has the columns)."""
    rows = read_meme_csv(path)
    next(rows, None)
