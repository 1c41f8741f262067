"""Every input row ends in exactly one record, and the crawl says so when it closes.

* ``guarded`` wraps a spider callback or errback: an exception while handling
  a row becomes that row's record (``bad_row`` with the exception as detail)
  and a ``rows/exceptions`` count, instead of a logged traceback and a row
  that silently has no record. The spider provides ``row_failure(meta,
  status, detail)``.
* ``RowSummary`` (an extension) logs one closing line. For a spider that
  keeps ``rows_read`` (``RowsRead``: the key of each row it took from its
  input) the numbers come from the manifests themselves (``manifest_summary``):
  a row is skipped (a final record before this crawl), recorded ok or failed
  (its records from this crawl), or UNACCOUNTED (none); a row with two final
  records is counted too. Otherwise they come from the stats the spider keeps:
  ``rows/read``, ``manifest/<status>`` (written by the manifest pipeline) and
  ``resume/skipped``. It stores ``rows/recorded_ok``, ``rows/recorded_failed``,
  ``rows/unaccounted``, ``rows/repeated`` and ``rows/doubled``; ``scrapy
  crawl`` exits 1 when either of the last two is not 0 (``rows_lost``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
from scrapy import signals

from processing import reasons
from processing.manifest import KEY_DIGEST, Record, expand_paths, iter_records, key_digest

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


class RowsRead:
    """The keys of the rows a crawl took from its input, as 20-byte digests (1.2 MB for 57,652 rows)."""

    def __init__(self):
        self.count = 0
        self._digests = bytearray()

    def add(self, key: tuple[str, str]) -> None:
        self.count += 1
        self._digests += key_digest(key)

    def keys(self) -> np.ndarray:
        """The distinct keys, sorted (a row listed again is one key)."""
        return np.unique(np.frombuffer(bytes(self._digests), KEY_DIGEST))


def summary(stats: dict) -> dict:
    """Rows read vs what became of them, from a crawl's stats."""
    read = stats.get("rows/read", 0)
    by_status = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("manifest/")}
    ok = by_status.pop(reasons.OK, 0)
    failed = sum(by_status.values())
    skipped = stats.get("resume/skipped", 0)
    return {"read": read, "ok": ok, "failed": failed, "failed_by_reason": dict(sorted(by_status.items())),
            "skipped": skipped, "repeated": 0, "unaccounted": read - ok - failed - skipped, "doubled": 0}


def records_of(folder: Path, source: str, keys: np.ndarray) -> Iterator[tuple[int, Record]]:
    """(the key's index in ``keys``, record) of each record of ``source`` in the manifests under ``folder``
    whose key is one of ``keys`` (sorted digests)."""
    for path in expand_paths([folder]) if folder.is_dir() else []:
        for rec in iter_records(path):
            if rec is None or rec.source != source:
                continue
            probe = np.array(key_digest(rec.key), dtype=KEY_DIGEST)[()]   # as the array holds it
            i = int(np.searchsorted(keys, probe))
            if i < len(keys) and keys[i] == probe:
                yield i, rec


def manifest_summary(folder: Path, source: str, rows: RowsRead, since: float) -> dict:
    """Rows read vs what became of them, from the manifests under ``folder`` (``summary``'s numbers).

    A row read is skipped when it has a final record older than ``since`` (the crawl's start), else recorded
    by its records written since (ok wins, else the newest: the manifest's own rule), else unaccounted; it is
    doubled when it has more than one final record.
    """
    keys = rows.keys()
    finals: Counter = Counter()
    skipped: set[int] = set()
    latest: dict[int, tuple[bool, float, str]] = {}     # the winner so far of each row's new records
    for i, rec in records_of(folder, source, keys):
        finals[i] += rec.final
        if rec.time < since:
            if rec.final:
                skipped.add(i)
        elif (rec.ok, rec.time) >= latest.get(i, (False, -1.0))[:2]:
            latest[i] = (rec.ok, rec.time, rec.status)
    statuses = Counter(status for i, (_, _, status) in latest.items() if i not in skipped)
    ok = statuses.pop(reasons.OK, 0)
    failed = sum(statuses.values())
    return {"read": rows.count, "ok": ok, "failed": failed, "failed_by_reason": dict(sorted(statuses.items())),
            "skipped": len(skipped), "repeated": rows.count - len(keys),
            "unaccounted": len(keys) - len(skipped) - ok - failed, "doubled": sum(n > 1 for n in finals.values())}


def rows_lost(stats: dict) -> bool:
    """Whether the closing accounting found a row without a record, or with two final records."""
    return bool(stats.get("rows/unaccounted") or stats.get("rows/doubled"))


class RowSummary:
    def __init__(self, crawler):
        self.crawler = crawler
        self.started = time.time()      # records at least this new were written by this crawl
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def spider_closed(self, spider, reason):
        stats = self.crawler.stats
        if stats.get_value("rows/read") is None:
            return   # a spider that does not count input rows
        rows = getattr(spider, "rows_read", None)
        s = (manifest_summary(Path(self.crawler.settings.get("MANIFEST_DIR")), spider.source, rows, self.started)
             if rows is not None else summary(stats.get_stats()))
        for name in ("ok", "failed"):
            stats.set_value(f"rows/recorded_{name}", s[name])
        for name in ("repeated", "unaccounted", "doubled"):
            stats.set_value(f"rows/{name}", s[name])
        by_reason = ", ".join(f"{k}: {v}" for k, v in s["failed_by_reason"].items()) or "none"
        log = logger.warning if s["unaccounted"] or s["doubled"] or not s["read"] else logger.info
        log("%s closed (%s): %d rows read, %d recorded ok, %d recorded failed (%s), %d skipped by resume%s%s%s%s",
            spider.name, reason, s["read"], s["ok"], s["failed"], by_reason, s["skipped"],
            f", {s['repeated']} listed again (recorded once)" if s["repeated"] else "",
            f", {s['unaccounted']} UNACCOUNTED" if s["unaccounted"] else "",
            f", {s['doubled']} with TWO FINAL RECORDS" if s["doubled"] else "",
            " (0 rows: nothing to crawl)" if not s["read"] else "")
