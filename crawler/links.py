"""Lists of image links (the imgur crawl's input), read the same way by the feeder and the spider.

Three shapes: the original project's one line of comma-separated links (``memeurls.csv``), one link per
line, or a CSV whose header names a link column (``url``, ``link``, ``image``...). Every non-empty cell is
one listed link, kept with its 1-based line; repeats are the caller's business.

The distributed job for one link is ``{"link": text, "line": n}``; its key (the key of the record the
spider writes for it) is ``imgur/<image id>``, or ``imgur/line <n>: <text>`` for a cell that is not a
direct imgur image link (recorded as a bad row).
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlsplit

LINK_COLUMNS = ("url", "urls", "link", "links", "image", "image url", "image link", "imgur", "imgur url",
                "imgur link", "src")
_IMAGE_PATH = re.compile(r"^/(?P<id>[A-Za-z0-9]{5,10})\.[A-Za-z0-9]{3,4}$")


class LinkListError(ValueError):
    """A link list that cannot be read at all (one line for the user)."""


def imgur_image_id(link: str) -> str | None:
    """``https://i.imgur.com/<id>.<ext>`` (any imgur host, scheme optional) -> ``<id>``; None otherwise."""
    link = link.strip()
    parts = urlsplit(link if "://" in link else "https://" + link)
    host = (parts.hostname or "").lower()
    m = _IMAGE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not (host == "imgur.com" or host.endswith(".imgur.com")) or not m:
        return None
    return m.group("id")


def link_source_id(link: str, line: int) -> str:
    """The manifest ``source_id`` of a listed link: its image id, or its line and (shortened) text."""
    return imgur_image_id(link) or f"line {line}: {link.strip()[:100]}"


def _header_column(row: list[str]) -> int | None:
    if any("://" in c or imgur_image_id(c) for c in row):
        return None
    names = [" ".join(c.strip().lower().replace("_", " ").split()) for c in row]
    return next((names.index(n) for n in LINK_COLUMNS if n in names), None)


def parse_link_list(text: str) -> list[tuple[int, str]]:
    """Every listed link of a link list's text as ``(line, link)``, in order, repeats included."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    first = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if first is None:
        return []
    column = _header_column(rows[first])
    if column is None:
        return [(n, c) for n, row in enumerate(rows[first:], first + 1) for cell in row for c in cell.split()]
    return [(n, row[column].strip() if column < len(row) else "")
            for n, row in enumerate(rows[first + 1:], first + 2) if any(c.strip() for c in row)]


def read_link_list(path) -> list[tuple[int, str]]:
    """``parse_link_list`` of a file; LinkListError for a file that is missing, not text, or lists nothing."""
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        raise LinkListError(f"cannot read link list {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8")
    except UnicodeDecodeError as exc:
        raise LinkListError(f"{path} is not a text file of links (undecodable byte at offset {exc.start})") from None
    links = parse_link_list(text)
    if not any(imgur_image_id(link) for _, link in links):
        raise LinkListError(f"no imgur image link in {path} (expected https://i.imgur.com/<id>.jpg links)")
    return links
