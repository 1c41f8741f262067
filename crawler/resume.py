"""Spider middleware: rows that already have a final manifest record are skipped
before any request is made, so re-running a crawl resumes it."""

from __future__ import annotations

from pathlib import Path

from itemadapter import ItemAdapter, is_item
from scrapy import Request, signals

from processing.manifest import final_digests, key_digest


class ResumeMiddleware:
    """Drops start requests and items whose ``(source, source_id)`` is done.

    A request names its row with ``meta["manifest_key"]``; an item with its
    ``source`` and ``source_id`` fields. Done means a final status in any
    manifest under ``MANIFEST_DIR`` (transient failures are tried again). Only
    the keys of the spider's own ``source`` are held, as 20-byte digests: an
    imgur crawl beside a finished archive crawl holds none of the archive's
    57,652 keys, and a resumed archive crawl holds ~1 MB for them (a set of
    tuples held ~12 MB for the whole crawl).
    """

    def __init__(self, crawler):
        self.crawler = crawler
        self.dir = Path(crawler.settings.get("MANIFEST_DIR"))
        self.done = final_digests([])   # none yet: the manifests are read when the spider opens
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def spider_opened(self, spider):
        if self.dir.is_dir():
            self.done = final_digests([self.dir], getattr(spider, "source", None))
        self.crawler.stats.set_value("resume/known_final", len(self.done))

    def is_done(self, key: tuple[str, str]) -> bool:
        return key_digest(key) in self.done

    def _keep(self, obj) -> bool:
        if isinstance(obj, Request):
            key = obj.meta.get("manifest_key")
        elif is_item(obj):
            a = ItemAdapter(obj)
            key = (a.get("source"), str(a.get("source_id"))) if a.get("source") else None
        else:
            key = None
        if key is not None and self.is_done(tuple(key)):
            self.crawler.stats.inc_value("resume/skipped")
            return False
        return True

    async def process_start(self, start):
        async for obj in start:
            if self._keep(obj):
                yield obj

    async def process_spider_output_async(self, response, result, spider=None):
        async for obj in result:
            if self._keep(obj):
                yield obj

    def process_spider_output(self, response, result, spider=None):
        for obj in result:
            if self._keep(obj):
                yield obj
