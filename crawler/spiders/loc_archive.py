"""scrapy crawl loc_archive -a csv=PATH [-a limit=N] [-a ids=1,2,3]

Resolves each Meme Generator row to its archived image: the raw capture
first (``{ARCHIVE}/{timestamp}id_/{url}``, redirects lead to the nearest
capture), then the captures listed on the calendar page, nearest first, until
one matches the row's MD5 and size. Every row yields exactly one item: the
verified bytes, or a failure status.
"""

from __future__ import annotations

import dataclasses
import hashlib

import scrapy
from scrapy.exceptions import UsageError

from processing import reasons

from .. import archive
from ..distributed import RedisJobsMixin
from ..faults import looks_like_html, reason_for_failure
from ..meme_csv import CsvError, MemeRow, read_meme_csv, validate_csv

SOURCE = "loc_archive"


class LocArchiveSpider(RedisJobsMixin, scrapy.Spider):
    name = SOURCE

    def __init__(self, csv: str | None = None, limit: str | None = None, ids: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.csv_path = csv
        self.limit = int(limit) if limit else None
        self.ids = set(ids.split(",")) if ids else None

    @classmethod
    def validate_arguments(cls, settings, args: dict) -> None:
        """Called by ``scrapy crawl`` before the crawl starts (one-line errors, exit 2)."""
        if settings.get("REDIS_URL"):
            return  # a worker: the rows come from the feeder
        path = args.get("csv") or settings.get("LOC_CSV")
        if not path:
            raise UsageError("no input: pass -a csv=PATH (the Meme Generator data set file; see datasets/meme_generator.md)")
        try:
            validate_csv(path)
        except CsvError as exc:
            raise UsageError(str(exc)) from None
        if args.get("limit") and not str(args["limit"]).isdigit():
            raise UsageError(f"-a limit= takes a whole number, got {args['limit']!r}")

    async def start(self):
        self.archive = self.settings.get("LOC_ARCHIVE")
        self.default_ts = self.settings.get("LOC_DEFAULT_TIMESTAMP")
        if self.distributed:
            for request in self.distributed_start():
                yield request
            return
        for row in self.rows():
            yield self.first_request(row)

    def rows(self):
        """The selected CSV rows (``limit``/``ids``); the feeder uses the same selection."""
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
        return self.first_request(MemeRow(**job["row"]))

    # ---- requests ----------------------------------------------------------
    def first_request(self, row: MemeRow):
        ts, _, original = archive.parse_archived_url(row.archived_url)
        if not row.meme_id or not original.startswith("http"):
            return self.record(row, "bad_row", detail=f"unusable row: {row.archived_url!r}")
        url = archive.raw_capture_url(self.archive, ts or self.default_ts, original)
        return self.fetch(url, row, candidates=None, tried=[])

    def fetch(self, url, row, *, candidates, tried, callback=None, reason=None):
        return scrapy.Request(url, callback=callback or self.parse_capture, errback=self.on_error, dont_filter=True,
                              meta={"row": row, "candidates": candidates, "tried": [*tried, url],
                                    "last_reason": reason, "manifest_key": (SOURCE, row.meme_id)})

    def next_candidate(self, response_or_request, row, reason):
        """After a failed candidate: the calendar if not read yet, else the next capture."""
        meta = response_or_request.meta
        candidates = meta["candidates"]
        if candidates is None:
            ts, date_range, original = archive.parse_archived_url(row.archived_url)
            url = archive.calendar_url(self.archive, original, date_range)
            return self.fetch(url, row, candidates=[], tried=meta["tried"], callback=self.parse_calendar,
                              reason=reason)
        if candidates:
            return self.fetch(candidates[0], row, candidates=candidates[1:], tried=meta["tried"], reason=reason)
        return self.record(row, reason, capture_url=meta["tried"][-1] if meta["tried"] else None)

    # ---- parsing -----------------------------------------------------------
    def parse_capture(self, response):
        row = response.meta["row"]
        if looks_like_html(response):
            if response.css(".day a"):
                return self.parse_calendar(response)
            return self.next_candidate(response, row, reasons.NOT_AN_IMAGE)
        body = response.body
        if row.md5 and hashlib.md5(body).hexdigest() != row.md5:
            return self.next_candidate(response, row, reasons.MD5_MISMATCH)
        if row.size is not None and len(body) != row.size:
            return self.next_candidate(response, row, reasons.SIZE_MISMATCH)
        item = self.record(row, reasons.OK, capture_url=response.url)
        item.update(body=body, file_urls=[response.url], md5=row.md5 or None)
        return item

    def parse_calendar(self, response):
        row = response.meta["row"]
        _, _, original = archive.parse_archived_url(row.archived_url)
        timestamps = archive.calendar_captures(response.css(".day a::attr(href)").getall(), original)
        target = archive.parse_archived_url(row.archived_url)[0] or self.default_ts
        tried = set(response.meta["tried"])
        urls = [u for u in (archive.raw_capture_url(self.archive, ts, original)
                            for ts in archive.nearest_first(timestamps, target)) if u not in tried]
        if not urls:
            return self.record(row, (timestamps and response.meta["last_reason"]) or reasons.NO_CAPTURE)
        return self.fetch(urls[0], row, candidates=urls[1:], tried=response.meta["tried"])

    def on_error(self, failure):
        request = failure.request
        return self.next_candidate(request, request.meta["row"], reason_for_failure(failure))

    def record(self, row: MemeRow, status: str, **extra) -> dict:
        return {"source": SOURCE, "source_id": row.meme_id, "label": 1, "status": status,
                "template": row.base_meme_name or None, "alt_text": row.alt_text or None,
                "url": row.archived_url, "expected_md5": row.md5 or None, **extra}
