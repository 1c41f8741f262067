"""The pure parts of the imgur crawler: link lists, image links, gallery answers, the removed placeholder.

A link list comes in three shapes, all read by ``read_link_list``:

* the original project's file (``memeurls.csv``): one line of comma-separated links;
* one link per line;
* a CSV with a header row naming a link column (``url``, ``link``, ``image``, ...).

Every non-empty cell becomes one ``ListedLink``: a usable image link (``image_id`` set) or an unusable one
(``image_id`` is None; a cell over csv's size limit has ``problem`` set), which the spider records as
``bad_row`` without a request.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from processing.cliutil import atomic_write_json
from processing.files import MISSING, escape_name, not_regular

from .meme_csv import csv_records, sniff_encoding
from .spiderargs import excerpt

SOURCE = "imgur"
VIDEO_EXTENSIONS = ("gifv", "mp4", "webm")
LINK_COLUMNS = ("url", "urls", "link", "links", "image", "image url", "image link", "imgur", "imgur url",
                "imgur link", "src")

_IMAGE_PATH = re.compile(r"^/(?P<id>[A-Za-z0-9]{1,20})\.(?P<ext>[A-Za-z0-9]{3,4})$")


class LinkListError(Exception):
    """A link list that cannot be read at all (one line for the user)."""


@dataclass(frozen=True, slots=True)
class ListedLink:
    line: int                 # 1-based line of the list it came from
    text: str                 # the cell as written
    image_id: str | None      # None: not a direct imgur image link
    ext: str = ""
    problem: str = ""         # why the cell could not be read at all (image_id is None then)

    @property
    def source_id(self) -> str:
        """The manifest key: the image id, or (for an unusable cell) its line and text, shortened."""
        return self.image_id or f"line {self.line}: {self.text[:100]}"

    @property
    def is_video(self) -> bool:
        return self.ext in VIDEO_EXTENSIONS


def parse_link(text: str, line: int = 0) -> ListedLink:
    """``https://i.imgur.com/<id>.<ext>`` (any imgur host, http or https, no query needed) -> its id and extension."""
    text = text.strip()
    try:
        parts = urlsplit(text if "://" in text else "https://" + text)
        host = (parts.hostname or "").lower()
    except ValueError:   # a bracket that is not an IPv6 address, a port that is not a number
        return ListedLink(line, text, None)
    m = _IMAGE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or not (host == "imgur.com" or host.endswith(".imgur.com")) or not m:
        return ListedLink(line, text, None)
    return ListedLink(line, text, m.group("id"), m.group("ext").lower())


def unreadable_cell(text: str, line: int, error: str) -> ListedLink:
    """An unusable cell over csv's size limit, its text shortened (the record stays small)."""
    return ListedLink(line, excerpt(text), None, problem=f"unreadable cell on line {line}: {error}")


def _words(cell: str, line: int) -> list[ListedLink]:
    """The links side by side in one cell (split at whitespace); a cell with no image link among its words is
    one unusable cell, so a line of text is one ``bad_row``, not one per word."""
    links = [parse_link(word, line) for word in cell.split()]
    return links if len(links) < 2 or any(link.image_id for link in links) else [parse_link(cell, line)]


def _cells(values: list[str], column: int | None, line: int, error: str) -> list[ListedLink]:
    """The links of one record: its ``column`` (a CSV with a header), else the links of every cell.

    Of a record csv could not read (``error``), only the cells over csv's size limit are unusable: the links
    beside them (the rest of a one-line list, the link of a row with an over-long title) are kept.
    """
    cells = [values[column] if column < len(values) else ""] if column is not None else values
    out: list[ListedLink] = []
    for cell in cells:
        if error and len(cell) > csv.field_size_limit():
            out.append(unreadable_cell(cell.strip(), line, error))
        else:
            out += [parse_link(cell, line)] if column is not None else _words(cell, line)
    return out


def _decode(raw: bytes, path: Path) -> str:
    encoding = sniff_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LinkListError(f"{path} is not a text file of links (undecodable byte at offset {exc.start})") from None
    if "\x00" in io.StringIO(text, newline="").readline():   # a NUL further down only spoils its cell
        raise LinkListError(f"{path} is not a text file of links (binary content in its first line)")
    return text


def _header_column(first_row: list[str]) -> int | None:
    """The link column of a header row, or None when the first row is data."""
    names = [" ".join(c.strip().lower().replace("_", " ").split()) for c in first_row]
    if any(parse_link(c).image_id or "://" in c for c in first_row):
        return None
    for name in LINK_COLUMNS:
        if name in names:
            return names.index(name)
    return None


def read_link_list(path: str | Path) -> list[ListedLink]:
    """Every cell of the list, in order, duplicates included (see ``unique_links``)."""
    path = Path(path)
    kind = not_regular(path)
    if kind == MISSING:
        raise LinkListError(f"link list not found: {escape_name(str(path))}")
    if kind:
        raise LinkListError(f"link list {escape_name(str(path))} is {kind}, not a regular file: give a CSV or text file")
    text = _decode(path.read_bytes(), path)
    records = (r for r in csv_records(io.StringIO(text, newline="")) if any(c.strip() for c in r[1]))
    first = next(records, None)
    if first is None:
        raise LinkListError(f"link list is empty: {path}")
    line, values, error = first
    column = None if error else _header_column(values)
    links: list[ListedLink] = [] if column is not None else _cells(values, None, line, error)
    for line, values, error in records:   # with a header: one record per data row, an empty cell included
        links += _cells(values, column, line, error)
    if not links:
        raise LinkListError(f"link list has a header but no links: {path}")
    if not any(link.image_id for link in links):
        raise LinkListError(f"no imgur image link in {path} (expected https://i.imgur.com/<id>.jpg links, "
                            f"got {excerpt(links[0].text)} first)")
    return links


def unique_links(links: list[ListedLink]) -> tuple[list[ListedLink], int]:
    """The first appearance of each image id (or bad cell), and how many repeats were dropped."""
    seen: set[str] = set()
    out = []
    for link in links:
        if link.source_id not in seen:
            seen.add(link.source_id)
            out.append(link)
    return out, len(links) - len(out)


def is_removed_placeholder(body: bytes, md5s) -> bool:
    """imgur's "image removed" picture, recognised by its bytes (served with 200 and no redirect)."""
    return hashlib.md5(body).hexdigest() in md5s


def gallery_items(data) -> list | None:
    """The items of a gallery answer's ``data``: a dict with ``items`` or a bare list; None for any other shape."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return data["items"]
    return None


def is_video(entry: dict) -> bool:
    """An imgur Image that is a video: a ``video/*`` type or a .gifv/.mp4 link (an animated GIF's ``mp4``
    field is only imgur's offer of a video copy of the GIF)."""
    if str(entry.get("type") or "").lower().startswith("video/"):
        return True
    path = urlsplit(str(entry.get("link") or "")).path.lower()
    return path.endswith(tuple(f".{e}" for e in VIDEO_EXTENSIONS))


def is_auth_error(status: int, body: bytes, gallery_page: bool = False) -> bool:
    """An answer that refuses the client id itself: 401, or 403 with imgur's client-id error in the body, or any
    403 to a gallery page (public: only the caller can be refused there, e.g. with a bare "Permission Denied").
    An album may be refused on its own (a private one): there only the client-id error says so."""
    if status == 401:
        return True
    return status == 403 and (gallery_page or b"client_id" in body.lower().replace(b"client id", b"client_id"))


def api_error_text(body: bytes) -> str:
    """What an imgur error answer says, quoted and shortened: its ``data.error``, else the body's text."""
    try:
        error = json.loads(body)["data"]["error"]
    except (ValueError, KeyError, TypeError):
        error = body.decode("utf-8", "replace").strip()
    return excerpt(error)


def api_data(body: bytes):
    """The ``data`` of an imgur API answer; ValueError when the body is not a JSON object with ``data`` (an
    answer cut short, an HTML page served with 200)."""
    answer = json.loads(body)
    if not isinstance(answer, dict) or "data" not in answer:
        raise ValueError("not an imgur API answer: no data")
    return answer["data"]


@dataclass
class PagingState:
    """How far a gallery crawl got, so a re-run after a quota stop continues instead of starting over.

    Kept beside the manifests, one file per gallery (tag, sort, window), written atomically after every page
    and album. A crawl that ends normally marks it ``complete``: the next run pages the gallery afresh (a
    gallery changes over time; the manifests still skip images already recorded).
    """

    gallery: str
    pages_done: list[int] = field(default_factory=list)
    albums_done: list[str] = field(default_factory=list)
    albums_pending: dict[str, dict] = field(default_factory=dict)   # album id -> the gallery entry's metadata
    complete: bool = False

    @classmethod
    def load(cls, path: Path, gallery: str) -> "PagingState":
        """The unfinished state of this gallery, or a fresh one (no file, a finished crawl, another gallery)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**{k: data[k] for k in ("gallery", "pages_done", "albums_done", "albums_pending",
                                                  "complete")})
        except (OSError, ValueError, KeyError, TypeError):
            return cls(gallery)
        return state if state.gallery == gallery and not state.complete else cls(gallery)

    @property
    def resumed(self) -> bool:
        return bool(self.pages_done or self.albums_pending)

    def start_page(self) -> int:
        return max(self.pages_done) + 1 if self.pages_done else 0

    def save(self, path: Path) -> None:
        atomic_write_json(path, dataclasses.asdict(self))
