"""A local stand-in for the Library of Congress web archive and imgur's API.

Serves on 127.0.0.1 only. It behaves like the real sites where the crawlers
care: raw ``id_`` captures, redirects to the nearest capture, calendar pages
with ``.day a`` links (OpenWayback) or, with ``index=``, a CDX API in pywb's
(``/all/cdx``) or the Wayback Machine's (``/cdx/search/cdx``) form and a
calendar that is only a script shell, as theirs are; imgur gallery pages with albums and rate-limit headers,
a refused client id (403, with or without imgur's error), and injected faults (404, flaky 503, 429 with
Retry-After, wrong bytes, truncated bodies, torn JSON answers, HTML served as .jpg, challenge pages, slow
answers).

Tests build a ``Mirror`` in-process; the demo and benchmarks run
``python -m crawler.mirror --spec spec.json`` as a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from processing.cliutil import ArgumentParser

TORN_JSON = b'{"data": {"items": [ {"id": "broken"'   # an imgur answer cut short
CHALLENGE_HTML = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                  b"<div id='cf-chl-widget'>Checking your browser</div><script src='/cdn-cgi/challenge-platform/'>"
                  b"</script></body></html>")


@dataclass
class Capture:
    timestamp: str
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200            # what the archive recorded (a non-200 capture answers with that status)
    revisit: bool = False        # indexed as warc/revisit (same payload as an earlier 200 capture)
    fault: str | None = None     # this capture only: short, html_as_jpg, 503 (always)

    @property
    def digest(self) -> str:
        return base64.b32encode(hashlib.sha1(self.body).digest()).decode("ascii")


@dataclass
class LocItem:
    original: str
    captures: list[Capture]
    # what its raw id_ request does: calendar (a query page instead of a redirect), 404, flaky503 (twice),
    # 429 (once, with Retry-After), truncated, short (complete answer, too few bytes), html_as_jpg, challenge,
    # slow, hang, redirect_private, robots (robots.txt disallows it)
    fault: str | None = None
    # what its CDX index query does: paging (one capture per page), empty, malformed (a garbled line first),
    # 429 (once, with Retry-After), 404
    index_fault: str | None = None


@dataclass
class ImgurImage:
    id: str
    body: bytes | None            # None: removed (redirects to removed.png); REMOVED_PNG: the placeholder, with 200
    content_type: str = "image/jpeg"
    # what a request for it does: 404, 429 (once, with Retry-After), flaky503 (twice), 503 (always)
    fault: str | None = None


@dataclass
class ImgurSite:
    client_id: str = "demo-client-id"
    tag: str = "meme"
    pages: list[list[dict]] = field(default_factory=list)   # gallery items per page; "{base}" in links
    albums: dict[str, list[dict]] = field(default_factory=dict)
    images: dict[str, ImgurImage] = field(default_factory=dict)
    quota: int = 12500                                       # client requests left
    throttle_pages: set[int] = field(default_factory=set)   # answer 429 once
    malformed_pages: set[int] = field(default_factory=set)  # answer torn JSON (with 200), always
    malformed_once: set[int] = field(default_factory=set)   # answer torn JSON once, then the page
    malformed_albums: set[str] = field(default_factory=set)  # album ids whose endpoint answers torn JSON, always
    list_pages: set[int] = field(default_factory=set)       # ``data`` is the bare list of items
    odd_pages: set[int] = field(default_factory=set)        # ``data`` has a shape imgur never sends (a string)
    endless: bool = False                                    # pages past the last answer the last page again
    album_errors: dict[str, int] = field(default_factory=dict)   # album id -> HTTP status of its endpoint
    # how an unknown client id is refused, with 403: imgur's JSON "Invalid client_id" error, or "permission_denied":
    # a bare "Permission Denied" that does not name the client id
    refusal: str = "invalid_client_id"


def _ts_seconds(ts: str) -> float:
    ts = (ts + "00000000000000")[:14]
    return time.mktime(time.strptime(ts[:4] + max(ts[4:6], "01") + max(ts[6:8], "01") + ts[8:], "%Y%m%d%H%M%S"))


class Mirror:
    """Thread-served mirror; ``hits`` counts requests per path."""

    def __init__(self, loc: list[LocItem] | None = None, imgur: ImgurSite | None = None, *,
                 latency: float = 0.0, slow_seconds: float = 1.5, retry_after: int = 1, index: str | None = None):
        self.loc = {item.original: item for item in (loc or [])}
        self.index = index            # None (calendar pages only), "pywb" or "wayback"
        self.imgur = imgur or ImgurSite()
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.hits: Counter[str] = Counter()
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ---------------------------------------------------------
    def start(self, port: int = 0) -> str:
        mirror = self

        class Handler(_Handler):
            pass

        Handler.mirror = mirror
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def archive_url(self) -> str:
        return self.base_url + "/all"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def count(self, path: str) -> int:
        with self._lock:
            self.hits[path] += 1
            return self.hits[path]

    # ---- spec files (for subprocesses) -------------------------------------
    @classmethod
    def from_spec(cls, spec_path: str | Path) -> "Mirror":
        spec = json.loads(Path(spec_path).read_text())
        read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
        loc = [LocItem(i["original"], [Capture(c["timestamp"], read(c["file"]), c.get("content_type", "image/jpeg"))
                                       for c in i["captures"]], i.get("fault")) for i in spec.get("loc", [])]
        im = spec.get("imgur", {})
        imgur = ImgurSite(client_id=im.get("client_id", "demo-client-id"), tag=im.get("tag", "meme"),
                          pages=im.get("pages", []), albums=im.get("albums", {}),
                          images={k: ImgurImage(k, REMOVED_PNG if v.get("placeholder") else read(v.get("file")),
                                                v.get("content_type", "image/jpeg"), v.get("fault"))
                                  for k, v in im.get("images", {}).items()},
                          quota=im.get("quota", 12500))
        return cls(loc, imgur, latency=spec.get("latency", 0.0), index=spec.get("index"))


class _Handler(BaseHTTPRequestHandler):
    mirror: Mirror
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        m = self.mirror
        path = unquote(self.path)
        n = m.count(path)
        if m.latency:
            time.sleep(m.latency)
        if path == "/robots.txt":
            disallow = "".join(f"Disallow: /all/*/{i.original}\n" for i in m.loc.values() if i.fault == "robots")
            return self.send(200, f"User-agent: *\n{disallow}Allow: /\n".encode(), "text/plain")
        if path.startswith("/all/cdx?") or path.startswith("/cdx/search/cdx?"):
            return self.cdx(self.path, n)
        if path.startswith("/all/"):
            return self.loc(path[len("/all/"):], n)
        if path.startswith("/3/"):
            return self.imgur_api(path[len("/3/"):], n)
        if path.startswith("/i/"):
            return self.imgur_image(path[len("/i/"):], n)
        if path == "/removed.png":
            return self.send(200, REMOVED_PNG, "image/png")
        return self.send(404, b"not found", "text/plain")

    def send(self, status: int, body: bytes, ctype: str, headers: dict | None = None, declared: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared if declared is not None else len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        with self.mirror._lock:
            self.mirror.bytes_sent += len(body)
        if declared is not None and declared != len(body):
            self.close_connection = True

    def redirect(self, location: str):
        self.send(302, b"", "text/plain", {"Location": location})

    # ---- LoC archive -------------------------------------------------------
    def loc(self, rest: str, n: int):
        stamp, _, original = rest.partition("/")
        original = original.replace(":/", "://", 1) if ":/" in original and "://" not in original else original
        item = self.mirror.loc.get(original)
        if "*" in stamp:
            return self.calendar(item, original)
        if not stamp.endswith("id_"):
            return self.redirect(f"/all/{stamp}id_/{original}")
        ts = stamp[:-3]
        if item is None or not item.captures:
            return self.send(404, b"<html><body>Not in archive</body></html>", "text/html")
        fault = item.fault
        if fault == "404":
            return self.send(404, b"<html><body>Not in archive</body></html>", "text/html")
        if fault == "flaky503" and n <= 2:
            return self.send(503, b"<html><body>Service unavailable</body></html>", "text/html")
        if fault == "429" and n <= 1:
            return self.send(429, b"slow down", "text/plain", {"Retry-After": self.mirror.retry_after})
        if fault == "challenge":
            return self.send(403, CHALLENGE_HTML, "text/html", {"cf-ray": "8a1b2c3d4e5f-IAD"})
        if fault == "redirect_private":
            return self.redirect(f"http://127.0.0.2:9/all/{ts}id_/{original}")
        if fault in ("slow", "hang"):
            time.sleep(self.mirror.slow_seconds if fault == "slow" else 30)
        exact = next((c for c in item.captures if c.timestamp == ts), None)
        if exact is None and fault == "calendar":   # a query page instead of a redirect
            return self.calendar(item, original)
        if exact is None:
            nearest = min(item.captures, key=lambda c: abs(_ts_seconds(c.timestamp) - _ts_seconds(ts)))
            return self.redirect(f"/all/{nearest.timestamp}id_/{original}")
        if exact.fault == "503":
            return self.send(503, b"<html><body>Service unavailable</body></html>", "text/html")
        fault = exact.fault or fault
        if fault == "html_as_jpg":
            return self.send(200, b"<html><body>Image not archived</body></html>", "image/jpeg")
        if fault == "truncated":
            return self.send(200, exact.body[: len(exact.body) // 2], exact.content_type, declared=len(exact.body))
        if fault == "short":
            return self.send(200, exact.body[: len(exact.body) // 2], exact.content_type)
        if exact.status != 200:
            return self.send(exact.status, b"<html><body>archived error page</body></html>", "text/html")
        return self.send(200, exact.body, exact.content_type,
                         {"Memento-Datetime": exact.timestamp, "Link": f"<{original}>; rel=\"original\""})

    def calendar(self, item: LocItem | None, original: str):
        if self.mirror.index:   # pywb and the Wayback Machine draw the calendar with a script from the CDX API
            body = (f"<!DOCTYPE html><html><head><title>Calendar: {html.escape(original)}</title></head><body>"
                    f'<div id="calendar"></div><script src="/static/calendar.js"></script></body></html>').encode()
            return self.send(200, body, "text/html; charset=utf-8")
        days = "".join(
            f'<div class="day"><a href="/all/{c.timestamp}/{html.escape(original)}">{c.timestamp[6:8]}</a></div>'
            for c in (item.captures if item else []))
        body = (f"<!DOCTYPE html><html><head><title>Calendar: {html.escape(original)}</title></head><body>"
                f'<div class="calendar"><div class="month">{days}</div></div></body></html>').encode()
        self.send(200, body, "text/html; charset=utf-8")

    def cdx(self, raw_path: str, n: int):
        """The CDX API of the configured kind; the other form (or no index) answers 404."""
        m = self.mirror
        parts = urlsplit(raw_path)
        kind = "pywb" if parts.path == "/all/cdx" else "wayback"
        if m.index != kind:
            return self.send(404, b"<html><body>Not found</body></html>", "text/html")
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        original = q.get("url", "")
        item = m.loc.get(original)
        fault = item.index_fault if item else None
        if fault == "429" and n <= 1:
            return self.send(429, b"slow down", "text/plain", {"Retry-After": m.retry_after})
        if fault == "404":
            return self.send(404, b"<html><body>Not found</body></html>", "text/html")
        captures = sorted(item.captures if item and fault != "empty" else [], key=lambda c: c.timestamp)
        lo, hi = q.get("from", ""), q.get("to", "")
        captures = [c for c in captures if (not lo or c.timestamp >= lo[:14]) and (not hi or c.timestamp <= hi[:14])]
        key = original.split("://", 1)[-1]
        if kind == "pywb":
            lines = [json.dumps({"urlkey": key, "timestamp": c.timestamp, "url": original,
                                 "mime": "warc/revisit" if c.revisit else c.content_type,
                                 **({} if c.revisit else {"status": str(c.status)}), "digest": c.digest,
                                 "length": str(len(c.body)), "offset": "0", "filename": "mirror.warc.gz"})
                     for c in captures]
            if fault == "malformed":
                lines.insert(0, '{"urlkey": "broken", "timestamp": "2015')
            return self.send(200, "".join(line + "\n" for line in lines).encode(), "text/x-ndjson")
        start = int(q.get("resumeKey", "0") or 0)
        size = 1 if fault == "paging" else int(q.get("limit", "0") or 0) or len(captures) or 1
        chunk = captures[start:start + size]
        rows = [["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]]
        rows += [[key, c.timestamp, original, "warc/revisit" if c.revisit else c.content_type,
                  "-" if c.revisit else str(c.status), c.digest, str(len(c.body))] for c in chunk]
        if start + size < len(captures) and q.get("showResumeKey") == "true":
            rows += [[], [str(start + size)]]
        lines = [json.dumps(r) for r in rows]
        if fault == "malformed":
            lines.insert(1, '["broken", "2015')
        self.send(200, ("[" + ",\n".join(lines) + "]\n").encode(), "application/json")

    # ---- imgur -------------------------------------------------------------
    def imgur_api(self, rest: str, n: int):
        site = self.mirror.imgur
        auth = self.headers.get("Authorization")
        if not auth:
            return self.send(401, b'{"data":{"error":"Authentication required"},"success":false,"status":401}',
                             "application/json")
        if auth != f"Client-ID {site.client_id}":   # imgur's answer to an unknown client id
            if site.refusal == "permission_denied":
                return self.send(403, b"Permission Denied", "text/plain")
            return self.send(403, json.dumps({"data": {"error": "Invalid client_id", "request": f"/3/{rest}",
                                                       "method": "GET"}, "success": False, "status": 403}).encode(),
                             "application/json")
        with self.mirror._lock:
            site.quota -= 1
            remaining = site.quota
        headers = {"X-RateLimit-ClientLimit": 12500, "X-RateLimit-ClientRemaining": remaining,
                   "X-RateLimit-UserLimit": 2000, "X-RateLimit-UserRemaining": max(remaining, 0),
                   "X-RateLimit-UserReset": int(time.time()) + 3600}
        if remaining < 0:
            return self.send(429, b'{"data":{"error":"Too Many Requests"},"success":false,"status":429}',
                             "application/json", headers)
        parts = rest.strip("/").split("/")
        if parts[:2] == ["gallery", "t"] and len(parts) == 6:
            page = int(parts[5])
            if page in site.throttle_pages and n <= 1:
                return self.send(429, b'{"data":{"error":"slow down"},"success":false,"status":429}',
                                 "application/json", {**headers, "Retry-After": self.mirror.retry_after})
            if page in site.malformed_pages or (page in site.malformed_once and n <= 1):
                return self.send(200, TORN_JSON, "application/json", headers)
            if page in site.odd_pages:
                return self.json("unexpected", headers)
            items = site.pages[min(page, len(site.pages) - 1)] if site.endless and site.pages else \
                site.pages[page] if page < len(site.pages) else []
            if page in site.list_pages:
                return self.json(self.links(items), headers)
            data = {"name": parts[2], "display_name": parts[2], "total_items": sum(map(len, site.pages)),
                    "items": self.links(items)}
            return self.json(data, headers)
        if parts[0] == "album" and len(parts) == 3 and parts[2] == "images":
            if parts[1] in site.album_errors:
                status = site.album_errors[parts[1]]
                error = {403: "Permission denied", 404: "Unable to find an album with the id, " + parts[1]}
                return self.send(status, json.dumps({"data": {"error": error.get(status, "error"),
                                                              "request": f"/3/{rest}", "method": "GET"},
                                                     "success": False, "status": status}).encode(),
                                 "application/json", headers)
            if parts[1] in site.malformed_albums:
                return self.send(200, TORN_JSON, "application/json", headers)
            if parts[1] not in site.albums:
                return self.send(404, b'{"data":{"error":"Not found"},"success":false,"status":404}',
                                 "application/json", headers)
            return self.json(self.links(site.albums[parts[1]]), headers)
        return self.send(404, b'{"success":false,"status":404}', "application/json", headers)

    def links(self, obj):
        return json.loads(json.dumps(obj).replace("{base}", self.mirror.base_url))

    def json(self, data, headers):
        self.send(200, json.dumps({"data": data, "success": True, "status": 200}).encode(), "application/json", headers)

    def imgur_image(self, name: str, n: int):
        image = self.mirror.imgur.images.get(name.rsplit(".", 1)[0])
        fault = image.fault if image else None
        if fault == "404":
            return self.send(404, b"<html><body>Not found</body></html>", "text/html")
        if fault == "429" and n <= 1:
            return self.send(429, b"slow down", "text/plain", {"Retry-After": self.mirror.retry_after})
        if fault == "503" or (fault == "flaky503" and n <= 2):
            return self.send(503, b"<html><body>Service unavailable</body></html>", "text/html")
        if image is None or image.body is None:
            return self.redirect("/removed.png")
        self.send(200, image.body, image.content_type)


# imgur's "removed" placeholder stands in as a tiny valid PNG; crawls against the mirror recognise it by
# ``-s IMGUR_REMOVED_MD5=<REMOVED_PNG_MD5>`` (the real picture's digest is the setting's default)
REMOVED_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
                b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00"
                b"IEND\xaeB`\x82")
REMOVED_PNG_MD5 = hashlib.md5(REMOVED_PNG).hexdigest()


def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m crawler.mirror", description=__doc__)
    p.add_argument("--spec", required=True, help="JSON spec written by demo.corpus")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    p.add_argument("--port-file", help="write the chosen port here once listening")
    args = p.parse_args(argv)
    mirror = Mirror.from_spec(args.spec)
    url = mirror.start(args.port)
    if args.port_file:
        Path(args.port_file).write_text(str(mirror._server.server_address[1]))
    print(f"mirror listening on {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mirror.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
