"""Spider middleware: take the next start request only when the scheduler runs dry.

Scrapy (2.13+) keeps pulling ``Spider.start()`` while the downloader is busy,
so a 57,652-row list is read into the scheduler before the first capture is
fetched: ~10 s of start-up and every row's request (with its state) in memory
at once. Waiting for ``scheduler_empty`` whenever the engine backs out (the
pattern of Scrapy's "lazy start requests") keeps memory flat in the number of
rows; follow-up requests (index pages, other captures) still go first.
"""

from __future__ import annotations

from scrapy import signals


class LazyStartMiddleware:
    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_start(self, start):
        async for obj in start:
            if self.crawler.engine.needs_backout():
                self.crawler.stats.inc_value("start/waits")
                await self.crawler.signals.wait_for(signals.scheduler_empty)
            yield obj
