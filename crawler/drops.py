"""Scrapy's own request filters, made to end in a record instead of a silent drop.

Scrapy drops requests in four places: robots.txt and offsite (downloader
middlewares raising a bare ``IgnoreRequest``), the URL length limit (a spider
middleware that filters its output) and the dupefilter (the scheduler refuses
the request). Each is replaced or watched here so the request's errback sees a
``Dropped`` failure carrying the reason; the spider's errback then records the
row (or tries its next candidate) like any other failure.
"""

from __future__ import annotations

from scrapy import Request, signals
from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.urllength import UrlLengthMiddleware
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from processing import reasons

from .faults import Dropped


class RobotsMiddleware(RobotsTxtMiddleware):
    """robots.txt as Scrapy reads it; a forbidden URL fails with ``robots_forbidden``.

    Also fixes a race in Scrapy 2.19: requests that wait for a host's
    robots.txt all await one Deferred, and only the first waiter receives the
    parser (the asyncio adapter's callback returns None to the next ones), so
    the other first requests to a host were never checked. The parser is read
    back from the cache once the wait is over.
    """

    async def robot_parser(self, request):
        parser = await super().robot_parser(request)
        cached = self._parsers.get(urlparse_cached(request).netloc, parser)
        return parser if isinstance(cached, Deferred) else cached

    def process_request_2(self, rp, request):
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest:
            raise Dropped(reasons.ROBOTS_FORBIDDEN, request.url[:200]) from None


class OffsiteDropMiddleware(OffsiteMiddleware):
    """Offsite filtering in the downloader only, failing with ``offsite``.

    Scrapy also filters on the ``request_scheduled`` signal, where a dropped
    request reaches no errback; here that check is left to ``process_request``.
    """

    def request_scheduled(self, request, spider):
        return None

    def process_request(self, request, spider=None):
        try:
            super().process_request(request)
        except IgnoreRequest:
            raise Dropped(reasons.OFFSITE, request.url[:200]) from None


def _errback_output(request: Request, reason: str):
    """What the request's errback makes of a ``Dropped`` failure (a record or the next request)."""
    if request.errback is None:
        return []
    failure = Failure(Dropped(reason, request.url[:200]))
    failure.request = request            # as Scrapy does before it calls an errback
    out = request.errback(failure)
    if out is None:
        return []
    return [out] if isinstance(out, (Request, dict)) else list(out)


class UrlLengthDropMiddleware(UrlLengthMiddleware):
    """Scrapy's URL length limit; an over-long request is handed to its errback (``url_too_long``)."""

    def get_processed_request(self, request, response):
        return request

    def _expand(self, o):
        if isinstance(o, Request) and len(o.url) > self.maxlength:
            self.crawler.stats.inc_value("urllength/request_ignored_count")
            return _errback_output(o, reasons.URL_TOO_LONG)
        return [o]

    async def process_start(self, start):
        async for o in start:
            for x in self._expand(o):
                yield x

    def process_spider_output(self, response, result, spider=None):
        for o in result:
            yield from self._expand(o)

    async def process_spider_output_async(self, response, result, spider=None):
        async for o in result:
            for x in self._expand(o):
                yield x


class DroppedRequests:
    """Extension: a request the scheduler refuses (the dupefilter) goes to its errback as ``filtered_duplicate``."""

    def __init__(self, crawler):
        self.crawler = crawler
        crawler.signals.connect(self.request_dropped, signal=signals.request_dropped)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def request_dropped(self, request, spider):
        self.crawler.stats.inc_value("rows/dropped_by_scheduler")
        for out in _errback_output(request, reasons.FILTERED_DUPLICATE):
            if isinstance(out, Request):
                self.crawler.engine.crawl(out)
            else:
                deferred_from_coro(self.crawler.engine.scraper.start_itemproc_async(out, response=None))
