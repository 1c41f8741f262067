"""Every input row ends in exactly one record, and the crawl says so when it closes.

* ``guarded`` wraps a spider callback or errback: an exception while handling
  a row becomes that row's record (``bad_row`` with the exception as detail)
  and a ``rows/exceptions`` count, instead of a logged traceback and a row
  that silently has no record. The spider provides ``row_failure(meta,
  status, detail)``.
* ``RowSummary`` (an extension) logs one closing line from the stats a
  spider keeps: ``rows/read`` (rows taken from the input), ``manifest/<status>``
  (written by the manifest pipeline) and ``resume/skipped``; it also stores
  ``rows/recorded_ok``, ``rows/recorded_failed`` and ``rows/unaccounted``.
"""

from __future__ import annotations

import functools
import logging

from scrapy import signals

from processing import reasons

from .spiderargs import excerpt

logger = logging.getLogger(__name__)


def guarded(method):
    @functools.wraps(method)
    def wrapper(self, response_or_failure):
        try:
            return method(self, response_or_failure)
        except Exception as exc:  # noqa: BLE001 - any bug or bad input ends in the row's record
            request = getattr(response_or_failure, "request", None)
            meta = getattr(response_or_failure, "meta", None) or getattr(request, "meta", None)
            if not meta or "state" not in meta:
                raise
            self.crawler.stats.inc_value("rows/exceptions")
            self.crawler.stats.inc_value(f"rows/exceptions/{method.__name__}")
            self.logger.error("%s while handling row %s in %s: %s", type(exc).__name__,
                              meta.get("manifest_key"), method.__name__, excerpt(exc, 200))
            return self.row_failure(meta, reasons.BAD_ROW, f"{type(exc).__name__}: {excerpt(exc, 200)}")
    return wrapper


def summary(stats: dict) -> dict:
    """Rows read vs what became of them, from a crawl's stats."""
    read = stats.get("rows/read", 0)
    by_status = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("manifest/")}
    ok = by_status.pop(reasons.OK, 0)
    failed = sum(by_status.values())
    skipped = stats.get("resume/skipped", 0)
    return {"read": read, "ok": ok, "failed": failed, "failed_by_reason": dict(sorted(by_status.items())),
            "skipped": skipped, "unaccounted": read - ok - failed - skipped}


class RowSummary:
    def __init__(self, crawler):
        self.crawler = crawler
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def spider_closed(self, spider, reason):
        stats = self.crawler.stats
        if stats.get_value("rows/read") is None:
            return   # a spider that does not count input rows
        s = summary(stats.get_stats())
        stats.set_value("rows/recorded_ok", s["ok"])
        stats.set_value("rows/recorded_failed", s["failed"])
        stats.set_value("rows/unaccounted", s["unaccounted"])
        by_reason = ", ".join(f"{k}: {v}" for k, v in s["failed_by_reason"].items()) or "none"
        log = logger.warning if s["unaccounted"] or not s["read"] else logger.info
        log("%s closed (%s): %d rows read, %d recorded ok, %d recorded failed (%s), %d skipped by resume%s",
            spider.name, reason, s["read"], s["ok"], s["failed"], by_reason, s["skipped"],
            f", {s['unaccounted']} UNACCOUNTED" if s["unaccounted"] else (" (0 rows: nothing to crawl)"
                                                                            if not s["read"] else ""))
