"""scrapy crawl loc_archive [-a csv=PATH] [-a limit=N] [-a ids=1,2,3]

Resolves each Meme Generator row to its archived image. A row that names a
concrete capture asks for the raw capture first (``{ARCHIVE}/{timestamp}id_/{url}``,
redirects lead to the nearest capture); a row with only a date range asks the
archive's CDX index first. When the first answer does not verify, the other
captures come from the index (``LOC_INDEX``: ``cdx``, ``calendar`` or
``auto``, detected once per crawl) or, for archives without one, from the
calendar page's ``.day a`` links; they are tried nearest first, one per
payload digest, never a capture twice, until one matches the row's size and
MD5. Every row yields exactly one item: the verified bytes, or the most
telling failure with every candidate tried in ``attempts``. A row listed again
is crawled once; a later row with an earlier row's Meme ID and other contents
is ``duplicate_id``, recorded under ``{id}@line{N}`` (``record_id``).
"""

from __future__ import annotations

import dataclasses
import hashlib

import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import TextResponse

from processing import reasons

from .. import archive
from ..distributed import RedisJobsMixin
from ..faults import Dropped, looks_like_html, reason_for_failure
from ..meme_csv import MEME_ID, CsvError, MemeRow, printable, read_meme_csv, validate_csv, with_repeats
from ..rowguard import RowsRead, guarded
from ..spiderargs import excerpt

SOURCE = "loc_archive"
INDEX_MODES = ("cdx", "calendar", "auto")
CALENDAR = "calendar"
UNKNOWN = "unknown"       # the index is not probed yet

# Which failure describes a row best when several candidates failed: what the bytes at the row's URL were
# (not an image, the wrong size, the wrong MD5) says more than an HTTP status or an empty index.
PRECEDENCE = (reasons.NOT_AN_IMAGE, reasons.BLOCKED, reasons.TOO_LARGE, reasons.TRUNCATED, reasons.SIZE_MISMATCH,
              reasons.MD5_MISMATCH, reasons.REDIRECT_REFUSED, reasons.ROBOTS_FORBIDDEN, reasons.URL_TOO_LONG,
              reasons.OFFSITE, reasons.FILTERED_DUPLICATE, reasons.IGNORED)


def row_outcome(attempts: list[dict], listed_none: bool = False) -> tuple[str, str | None]:
    """(status, capture_url) for a row whose candidates all failed.

    Any transient failure makes the row transient (a re-run tries it again);
    otherwise the most telling reason by ``PRECEDENCE``, the earliest attempt
    on a tie (the row's own capture comes first). ``no_capture`` when nothing
    was tried, or when the index/calendar listed no capture and the archive
    answered only 404/410.
    """
    fetched = [a for a in attempts if a["status"] != reasons.OK]
    for a in fetched:
        if not reasons.is_final(a["status"]):
            return a["status"], a["url"]
    gone = (reasons.http_reason(404), reasons.http_reason(410))
    if not fetched or (listed_none and all(a["status"] in gone for a in fetched)):
        return reasons.NO_CAPTURE, None
    rank = {r: i for i, r in enumerate(PRECEDENCE)}
    best = min(fetched, key=lambda a: rank.get(a["status"], len(PRECEDENCE)))
    return best["status"], best["url"]


def verify(body: bytes, row: MemeRow, html: bool) -> str:
    """The verdict on one capture's bytes: size first (free), then MD5."""
    if html:
        return reasons.NOT_AN_IMAGE
    if len(body) != row.size:
        return reasons.SIZE_MISMATCH
    if hashlib.md5(body).hexdigest() != row.md5:
        return reasons.MD5_MISMATCH
    return reasons.OK


def meme_ids(text: str) -> set[str]:
    """The Meme IDs of ``-a ids=`` (feed: ``--ids``): comma-separated whole numbers, empty items ignored.

    ValueError (its message reads after the option's name) for anything else: ``ids=abc`` would select no row
    and crawl nothing, without a word.
    """
    ids = [i.strip() for i in text.split(",") if i.strip()]
    if not ids or not all(MEME_ID.fullmatch(i) for i in ids):
        raise ValueError(f"takes comma-separated Meme IDs (whole numbers, e.g. 10509464,12285257), "
                         f"got {excerpt(text)}")
    return set(ids)


def record_id(row: MemeRow) -> str:
    """The row's ``source_id``: its Meme ID; ``{id}@line{N}`` for a later row with an earlier row's ID and other
    contents, so that each row has its own record."""
    meme_id = printable(row.meme_id)
    return f"{meme_id}@line{row.line}" if row.duplicate_of else meme_id


def row_problem(row: MemeRow) -> str:
    """Why a row cannot be requested at all ('' when it can)."""
    if row.problem:
        return row.problem
    ts, date_range, original = archive.parse_archived_url(row.archived_url)
    if not original.startswith(("http://", "https://")):
        return f"no archived URL on line {row.line}: {printable(row.archived_url)[:80]!r}"
    stamps = [ts] if ts else [s for s in archive.range_bounds(date_range) if s]
    bad = [s for s in stamps if not archive.valid_timestamp(s)]
    if bad:
        return f"timestamp {bad[0][:20]!r} is not a date (line {row.line})"
    return ""


class LocArchiveSpider(RedisJobsMixin, scrapy.Spider):
    name = SOURCE
    source = SOURCE   # the manifest records' source
    ARGUMENTS = ("csv", "limit", "ids")

    def __init__(self, csv: str | None = None, limit: str | None = None, ids: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.csv_path = csv
        self.limit = int(limit) if limit else None
        self.ids = meme_ids(ids) if ids is not None else None
        self.index_kind: str | None = UNKNOWN   # archive.PYWB, archive.WAYBACK, or None: the calendar
        self.waiting: list = []                  # rows waiting for the index probe: (continuation, state)
        self.rows_read = RowsRead()              # the closing accounting (crawler.rowguard.RowSummary)

    @classmethod
    def validate_arguments(cls, settings, args: dict) -> None:
        """Called by ``scrapy crawl`` before the crawl starts (one-line errors, exit 2)."""
        if settings.get("LOC_INDEX") not in INDEX_MODES:
            raise UsageError(f"LOC_INDEX takes one of {', '.join(INDEX_MODES)}, got {settings.get('LOC_INDEX')!r}")
        if "ids" in args:
            try:
                meme_ids(args["ids"])
            except ValueError as exc:
                raise UsageError(f"-a ids= {exc}") from None
        if settings.get("REDIS_URL"):
            return  # a worker: the rows come from the feeder
        path = args.get("csv") or settings.get("LOC_CSV")
        try:
            validate_csv(path)
        except CsvError as exc:
            raise UsageError(str(exc)) from None
        if args.get("limit") and not str(args["limit"]).isdigit():
            raise UsageError(f"-a limit= takes a whole number, got {str(args['limit'])[:30]!r}")

    async def start(self):
        self.archive = self.settings.get("LOC_ARCHIVE")
        self.default_ts = self.settings.get("LOC_DEFAULT_TIMESTAMP")
        self.crawler.stats.set_value("rows/read", 0)
        if self.settings.get("LOC_INDEX") == CALENDAR:
            self.index_known(None)
        if self.distributed:
            for request in self.distributed_start():
                yield request
            return
        for row in self.rows():
            request = self.take(row)
            if request is not None:
                yield request

    def rows(self):
        """The selected CSV rows (``limit``/``ids``), repeats marked; the feeder uses the same selection."""
        return with_repeats(self.selection)

    def selection(self):
        rows = read_meme_csv(self.csv_path or self.settings.get("LOC_CSV"))
        taken = 0
        for row in rows:
            if self.ids is not None and row.meme_id not in self.ids:
                continue
            if self.limit is not None and taken >= self.limit:
                break
            taken += 1
            yield row

    @staticmethod
    def job_for_row(row: MemeRow) -> dict:
        return {"row": dataclasses.asdict(row)}

    def request_for_job(self, job: dict):
        return self.take(MemeRow(**job["row"]))

    def take(self, row: MemeRow):
        """The first request (or the record) of a row read from the input; None for a row listed again,
        whose one record is the earlier line's."""
        self.crawler.stats.inc_value("rows/read")
        self.rows_read.add((SOURCE, record_id(row)))
        return None if row.repeat_of else self.first_request(row)

    # ---- which index the archive has (asked once per crawl, when a row first needs it) ----
    def with_index(self, state, then):
        """``then(state)`` once the archive's index is known; the first row to ask starts the probe.

        Rows that need the answer meanwhile wait here and are released by the
        probe's callback, so a crawl whose rows all resolve directly (or a
        resumed one) never asks.
        """
        if self.index_kind != UNKNOWN:
            return then(state)
        self.waiting.append((then, state))
        if len(self.waiting) == 1:
            return self.probe_request(archive.PYWB)
        return None

    def probe_request(self, kind):
        url = archive.cdx_query_url(kind, self.archive, self.settings.get("LOC_INDEX_PROBE_URL"), limit=1)
        return scrapy.Request(url, callback=self.parse_probe, errback=self.probe_failed, dont_filter=True,
                              meta={"probe": kind, "handle_httpstatus_all": True})

    def parse_probe(self, response):
        kind = response.meta["probe"]
        try:
            ok = response.status == 200 and not looks_like_html(response)
            if ok:
                page = archive.parse_cdx(response.body.decode("utf-8", "replace"))
                ok = bool(page.captures) or not page.malformed
        except Exception as exc:  # noqa: BLE001 - the waiting rows must still be released
            self.logger.error("index probe %s failed: %s", response.url, type(exc).__name__)
            ok = False
        return self.index_known(kind) if ok else self.next_probe(kind)

    def probe_failed(self, failure):
        return self.next_probe(failure.request.meta["probe"])

    def next_probe(self, kind):
        if kind == archive.PYWB:
            return self.probe_request(archive.WAYBACK)
        return self.index_known(None)

    def index_known(self, kind):
        self.index_kind = kind
        self.crawler.stats.set_value("loc/index", kind or CALENDAR)
        if kind:
            self.logger.info("archive index: the %s CDX API", kind)
        elif self.settings.get("LOC_INDEX") == "cdx":
            self.logger.warning("LOC_INDEX=cdx but %s answers neither CDX API: using the calendar", self.archive)
        else:
            self.logger.info("archive index: none found, using the calendar pages")
        waiting, self.waiting = self.waiting, []
        out = []
        for then, state in waiting:
            try:
                result = then(state)
            except Exception as exc:  # noqa: BLE001 - the row still gets its record
                result = self.finish(state, reasons.BAD_ROW, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
            if result is not None:
                out.append(result)
        return out

    # ---- requests ----------------------------------------------------------
    def first_request(self, row: MemeRow):
        state = {"row": row, "attempts": [], "queue": [], "fetched": set(), "digests": set(),
                 "index_asked": False, "calendar_asked": False, "captures": [], "pages": 0,
                 "listed": None}
        try:
            problem = row_problem(row)
        except Exception as exc:  # noqa: BLE001 - a row that breaks the checks is a bad row, not a lost one
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        if problem:
            return self.finish(state, reasons.BAD_ROW, detail=problem)
        if row.duplicate_of:
            return self.finish(state, reasons.DUPLICATE_ID,
                               detail=f"Meme ID {printable(row.meme_id)[:40]!r} on line {row.line} is on line "
                                      f"{row.duplicate_of} too, with other contents: that row is crawled")
        if archive.parse_archived_url(row.archived_url)[0] is not None:
            return self.direct_request(state)
        return self.with_index(state, self.range_first)      # a range row: the index says where its captures are

    def range_first(self, state):
        if self.index_kind:
            return self.index_request(state)
        return self.direct_request(state)

    def direct_request(self, state):
        """The row's own raw capture (its timestamp, else ``LOC_DEFAULT_TIMESTAMP``; the archive redirects)."""
        state["direct"] = True
        ts, _, original = archive.parse_archived_url(state["row"].archived_url)
        return self.fetch(state, archive.raw_capture_url(self.archive, ts or self.default_ts, original))

    def _request(self, state, url, callback, **meta):
        return scrapy.Request(url, callback=callback, errback=self.on_error, dont_filter=True,
                              meta={"state": state, "manifest_key": (SOURCE, record_id(state["row"])), **meta})

    def fetch(self, state, url):
        return self._request(state, url, self.parse_capture)

    def index_request(self, state, resume_key=None):
        state["index_asked"] = True
        row = state["row"]
        _, date_range, original = archive.parse_archived_url(row.archived_url)
        url = archive.cdx_query_url(self.index_kind, self.archive, original, date_range,
                                    limit=self.settings.getint("LOC_INDEX_PAGE_SIZE"), resume_key=resume_key)
        return self._request(state, url, self.parse_index, lookup=True)

    def calendar_request(self, state):
        state["calendar_asked"] = True
        _, date_range, original = archive.parse_archived_url(state["row"].archived_url)
        return self._request(state, archive.calendar_url(self.archive, original, date_range), self.parse_calendar,
                             lookup=True)

    def next_step(self, state):
        """After a failed candidate: the next capture, else the index or the calendar, else the row's record."""
        if state["queue"]:
            return self.fetch(state, state["queue"].pop(0))
        return self.with_index(state, self.after_candidates)

    def after_candidates(self, state):
        if self.index_kind and not state["index_asked"]:
            return self.index_request(state)
        if not state["calendar_asked"] and (not self.index_kind or state.get("index_failed")):
            return self.calendar_request(state)
        if not state.get("direct") and state["listed"] == 0:
            return self.direct_request(state)      # an index that lists nothing may lag: one raw request
        status, capture_url = row_outcome(state["attempts"], listed_none=state["listed"] == 0)
        return self.finish(state, status, capture_url=capture_url)

    def enqueue(self, state, timestamps):
        original = archive.parse_archived_url(state["row"].archived_url)[2]
        state["queue"] = [archive.raw_capture_url(self.archive, ts, original)
                          for ts in timestamps if ts not in state["fetched"]]

    def target(self, row):
        return archive.parse_archived_url(row.archived_url)[0] or self.default_ts

    # ---- parsing -----------------------------------------------------------
    @guarded
    def parse_capture(self, response):
        state = response.meta["state"]
        row = state["row"]
        html = looks_like_html(response)
        if html and isinstance(response, TextResponse) and response.css(".day a"):   # a calendar, not a capture
            return self.parse_calendar(response)
        ts = archive.capture_timestamp(response.url)
        if ts:
            state["fetched"].add(ts)                    # the final URL, after redirects
        status = verify(response.body, row, html)
        state["attempts"].append({"url": response.url, "status": status})
        if status == reasons.OK:
            item = self.finish(state, reasons.OK, capture_url=response.url)
            item.update(body=response.body, file_urls=[response.url], md5=row.md5)
            return item
        state["digests"].add(archive.payload_digest(response.body))
        return self.next_step(state)

    @guarded
    def parse_index(self, response):
        state = response.meta["state"]
        page = archive.parse_cdx(response.body.decode("utf-8", "replace"))
        if page.malformed:
            self.crawler.stats.inc_value("loc/index_malformed_lines", page.malformed)
        state["captures"].extend(page.captures)
        state["pages"] += 1
        if page.resume_key and state["pages"] < self.settings.getint("LOC_INDEX_MAX_PAGES"):
            return self.index_request(state, resume_key=page.resume_key)
        original = archive.parse_archived_url(state["row"].archived_url)[2]
        own = [c for c in state["captures"] if not c.original or _same_url(c.original, original)]
        state["listed"] = (state["listed"] or 0) + len(own)
        timestamps = archive.index_candidates(own, self.target(state["row"]), state["fetched"], state["digests"])
        self.crawler.stats.inc_value("loc/index_answers")
        state["captures"] = []
        self.enqueue(state, timestamps)
        return self.next_step(state)

    @guarded
    def parse_calendar(self, response):
        state = response.meta["state"]
        state["calendar_asked"] = True
        original = archive.parse_archived_url(state["row"].archived_url)[2]
        timestamps = archive.calendar_captures(response.css(".day a::attr(href)").getall(), original)
        timestamps = [ts for ts in timestamps if archive.valid_timestamp(ts)]
        state["listed"] = (state["listed"] or 0) + len(timestamps)
        self.enqueue(state, archive.nearest_first(timestamps, self.target(state["row"])))
        return self.next_step(state)

    @guarded
    def on_error(self, failure):
        request = failure.request
        state = request.meta["state"]
        reason = reason_for_failure(failure)
        state["attempts"].append({"url": request.url, "status": reason})
        response = getattr(failure.value, "response", None)
        for url in (request.url, response.url if response is not None else None):
            if url and not request.meta.get("lookup") and (ts := archive.capture_timestamp(url)):
                state["fetched"].add(ts)
        if request.meta.get("lookup"):
            state["index_failed"] = True                 # an index that fails leaves the calendar to try
        if isinstance(failure.value, Dropped) and failure.value.reason == reasons.ROBOTS_FORBIDDEN:
            self.crawler.stats.inc_value("loc/robots_forbidden")
        return self.next_step(state)

    # ---- records -----------------------------------------------------------
    def row_failure(self, meta: dict, status: str, detail: str) -> dict:
        """The record for a row whose handling raised (see crawler.rowguard.guarded)."""
        state = meta["state"]
        return self.finish(state, status, detail=detail)

    def finish(self, state, status: str, **extra) -> dict:
        row = state["row"]
        if state["attempts"]:
            extra["attempts"] = state["attempts"]
        return {"source": SOURCE, "source_id": record_id(row), "label": 1, "status": status,
                "template": printable(row.base_meme_name) or None, "alt_text": printable(row.alt_text) or None,
                "url": printable(row.archived_url), "page_url": printable(row.page_url) or None, "expected_md5": row.md5 if len(row.md5) == 32 else None,
                **extra}


def _same_url(a: str, b: str) -> bool:
    norm = lambda u: u.split("://", 1)[-1].rstrip("/").lower().replace(":80/", "/")  # noqa: E731
    return norm(a) == norm(b)
