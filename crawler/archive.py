"""The web-archive URL grammar (OpenWayback/pywb, as used by webarchive.loc.gov).

``{ARCHIVE}/{timestamp}/{original}`` is a capture page, ``{timestamp}id_`` the
raw original bytes, ``{from}-{to}*`` or ``*`` a calendar of captures.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit

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
