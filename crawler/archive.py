"""The web-archive URL grammar (OpenWayback/pywb, as used by webarchive.loc.gov).

``{ARCHIVE}/{timestamp}/{original}`` is a capture page, ``{timestamp}id_`` the
raw original bytes, ``{from}-{to}*`` or ``*`` a calendar of captures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode, urlsplit

_ARCHIVED = re.compile(r"^https?://[^/]+/[^/]+/(?P<ts>[0-9*\-]+)(?:[a-z]{2}_)?/(?P<original>.+)$")
_CAPTURE_PATH = re.compile(r"/(?P<ts>\d{4,14})(?:[a-z]{2}_)?/(?P<original>https?:/.+)$")


def parse_archived_url(url: str) -> tuple[str | None, str | None, str]:
    """Split an archived URL into (timestamp, range, original).

    A concrete 14-digit timestamp comes back as the timestamp; a calendar
    range (``19960101000000-20160901235959*`` or ``*``) as the range; the
    ``/all/0/`` placeholder as neither. A bare original URL is accepted too.
    """
    m = _ARCHIVED.match(url.strip())
    if not m:
        return None, None, url.strip()
    ts, original = m.group("ts"), _fix_scheme(m.group("original"))
    if "*" in ts:
        return None, ts.rstrip("*") or None, original
    if ts.isdigit() and len(ts) >= 4:
        return ts, None, original
    return None, None, original


def _fix_scheme(original: str) -> str:
    # some archives collapse "http://" to "http:/" in the path
    return re.sub(r"^(https?):/(?!/)", r"\1://", original)


def raw_capture_url(archive: str, timestamp: str, original: str) -> str:
    return f"{archive.rstrip('/')}/{timestamp}id_/{original}"


def calendar_url(archive: str, original: str, date_range: str | None = None) -> str:
    return f"{archive.rstrip('/')}/{date_range or ''}*/{original}"


def capture_timestamp(url: str) -> str | None:
    """The 14-digit (or shorter) timestamp of an archive capture URL, or None for any other URL."""
    m = _CAPTURE_PATH.search(urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else ""))
    return m.group("ts") if m else None


def to_datetime(ts: str) -> datetime:
    ts = (ts + "00000000000000")[:14]
    ts = ts[:4] + (ts[4:6] if ts[4:6] != "00" else "01") + (ts[6:8] if ts[6:8] != "00" else "01") + ts[8:]
    return datetime.strptime(ts, "%Y%m%d%H%M%S")


def nearest_first(timestamps: list[str], target: str) -> list[str]:
    t = to_datetime(target)
    return sorted(dict.fromkeys(timestamps), key=lambda ts: (abs((to_datetime(ts) - t).total_seconds()), ts))


def calendar_captures(hrefs: list[str], original: str) -> list[str]:
    """Timestamps of the calendar links that point at ``original``."""
    out = []
    for href in hrefs:
        m = _CAPTURE_PATH.search(urlsplit(href).path)
        if m and _fix_scheme(m.group("original")).rstrip("/") == original.rstrip("/"):
            out.append(m.group("ts"))
    return out


def valid_timestamp(ts: str) -> bool:
    """A 4-14 digit timestamp that names a real moment (``20151399000000`` does not)."""
    if not ts.isdigit() or not 4 <= len(ts) <= 14:
        return False
    try:
        to_datetime(ts)
    except ValueError:
        return False
    return True


def range_bounds(date_range: str | None) -> tuple[str | None, str | None]:
    """``19960101000000-20160901235959`` → (from, to); a single stamp bounds only ``from``."""
    if not date_range:
        return None, None
    start, _, end = date_range.partition("-")
    return start or None, end or None


# ---- the CDX index (pywb and the Wayback Machine) ---------------------------------------------
# pywb:    {ARCHIVE}/cdx?url=U&output=json         → one JSON object per line (urlkey, timestamp, url,
#                                                    mime, status, digest, length, offset, filename)
# Wayback: {HOST}/cdx/search/cdx?url=U&output=json → a JSON array of arrays, the first one the field names
#                                                    (urlkey, timestamp, original, mimetype, statuscode,
#                                                    digest, length), then [] and [resumeKey] when paged
# Both also answer in plain text (space-separated CDX, or CDXJ ``urlkey timestamp {json}``); the parser
# reads all of these, so index files and recorded answers can be fed to it as they are.
PYWB, WAYBACK = "pywb", "wayback"
REVISIT_MIME = "warc/revisit"
_WAYBACK_FIELDS = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length")


@dataclass(frozen=True)
class CdxCapture:
    timestamp: str
    original: str
    mime: str | None
    status: str | None          # None: the index does not say (revisits, some CDXJ lines)
    digest: str | None          # base32 SHA-1 of the payload

    @property
    def revisit(self) -> bool:
        return self.mime == REVISIT_MIME


@dataclass
class CdxPage:
    captures: list[CdxCapture] = field(default_factory=list)
    resume_key: str | None = None
    malformed: int = 0          # lines that did not parse (skipped)


def cdx_query_url(kind: str, archive: str, original: str, date_range: str | None = None,
                  limit: int | None = None, resume_key: str | None = None) -> str:
    start, end = range_bounds(date_range)
    params = [("url", original), ("output", "json")]
    params += [("from", start)] if start else []
    params += [("to", end)] if end else []
    if kind == WAYBACK:
        params += [("showResumeKey", "true")] + ([("limit", str(limit))] if limit else [])
        params += [("resumeKey", resume_key)] if resume_key else []
        parts = urlsplit(archive)
        return f"{parts.scheme}://{parts.netloc}/cdx/search/cdx?{urlencode(params)}"
    return f"{archive.rstrip('/')}/cdx?{urlencode(params)}"


def _none_if_dash(value) -> str | None:
    value = None if value is None else str(value).strip()
    return None if value in (None, "", "-") else value


def _capture(ts, original, mime, status, digest) -> CdxCapture:
    ts = str(ts).strip()
    if not valid_timestamp(ts):
        raise ValueError(f"bad timestamp {ts[:20]!r}")
    return CdxCapture(ts, str(original or ""), _none_if_dash(mime), _none_if_dash(status), _none_if_dash(digest))


def _from_fields(d: dict) -> CdxCapture:
    return _capture(d["timestamp"], d.get("url", d.get("original")), d.get("mime", d.get("mimetype")),
                    d.get("status", d.get("statuscode")), d.get("digest"))


def parse_cdx(text: str) -> CdxPage:
    """Captures listed by a CDX answer in any of the layouts above; bad lines are counted, not fatal."""
    page = CdxPage()
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            rows = json.loads(stripped)
        except ValueError:
            rows = None
        if isinstance(rows, list):
            return _wayback_rows(rows, page)
        # a malformed line inside the array: read it line by line
        rows = []
        for line in stripped.splitlines():
            line = line.strip().rstrip(",")
            line = line[1:] if line.startswith("[[") else line
            line = line[:-1] if line.endswith("]]") else line
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                page.malformed += 1
        return _wayback_rows(rows, page)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        line = line.strip()
        if not line or line.startswith("CDX ") or line.startswith("#"):
            continue
        try:
            if line.startswith("{"):
                page.captures.append(_from_fields(json.loads(line)))
                continue
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[2].startswith("{"):
                d = json.loads(parts[2])
                page.captures.append(_from_fields({**d, "timestamp": parts[1]}))
                continue
            fields = line.split()
            if len(fields) == 1 and i > 0 and not lines[i - 1].strip():
                page.resume_key = fields[0]      # plain-text Wayback paging: a blank line, then the key
                continue
            page.captures.append(_capture(*fields[1:6]))
        except (ValueError, TypeError, KeyError):
            page.malformed += 1
    return page


def _wayback_rows(rows: list, page: CdxPage) -> CdxPage:
    fields = list(_WAYBACK_FIELDS)
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            page.malformed += 1
            continue
        if not row:
            continue
        if i == 0 and "timestamp" in row:
            fields = [str(f) for f in row]
            continue
        if len(row) == 1 and i > 0 and rows[i - 1] == []:
            page.resume_key = str(row[0])
            continue
        try:
            page.captures.append(_from_fields(dict(zip(fields, row))))
        except (ValueError, TypeError, KeyError):
            page.malformed += 1
    return page


def index_candidates(captures: list[CdxCapture], target: str, skip_timestamps=(), skip_digests=()) -> list[str]:
    """Timestamps worth fetching, nearest to ``target`` first.

    Skipped: captures whose status is known and not 200; revisits whose payload
    (digest) no 200 capture in the index has (they cannot be resolved to an
    original); captures already fetched (by timestamp) and payloads already
    seen (by digest); and every capture after the nearest one of each payload,
    since the same digest means the same bytes and the same MD5 verdict.
    """
    originals = {c.digest for c in captures if c.status == "200" and c.digest}
    usable = [c for c in captures
              if (c.status == "200" if not c.revisit else c.digest in originals)
              or (c.status is None and not c.revisit)]
    seen_digests, seen_ts, out = set(skip_digests), set(skip_timestamps), []
    t = to_datetime(target)
    for c in sorted(usable, key=lambda c: (abs((to_datetime(c.timestamp) - t).total_seconds()), c.timestamp)):
        if c.timestamp in seen_ts or (c.digest and c.digest in seen_digests):
            continue
        seen_ts.add(c.timestamp)
        if c.digest:
            seen_digests.add(c.digest)
        out.append(c.timestamp)
    return out


def payload_digest(body: bytes) -> str:
    """The CDX ``digest`` of a payload: base32 of its SHA-1."""
    return base64.b32encode(hashlib.sha1(body).digest()).decode("ascii")
