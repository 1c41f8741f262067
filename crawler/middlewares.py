"""Downloader middlewares: safe redirects, Retry-After, imgur quotas and malformed imgur answers."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import time
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.utils.response import response_status_message

from processing.reasons import MALFORMED_ANSWER, QUOTA_EXHAUSTED, REDIRECT_REFUSED

from .faults import Dropped
from .imgur_links import api_data


def is_private_host(host: str) -> bool:
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified


def redirect_allowed(url: str, allowed_private_hosts: set[str]) -> bool:
    """Only http(s), and never to loopback/private addresses unless explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    return not is_private_host(parts.hostname or "") or (parts.hostname or "") in allowed_private_hosts


class SafeRedirectMiddleware(RedirectMiddleware):
    """Scrapy's redirect handling, refusing redirects into private networks.

    ``REDIRECT_ALLOWED_PRIVATE_HOSTS`` lists exceptions (tests use 127.0.0.1).
    """

    def __init__(self, settings):
        super().__init__(settings)
        self.allowed_private = set(settings.getlist("REDIRECT_ALLOWED_PRIVATE_HOSTS"))

    def _redirect(self, redirected, request, reason):
        if not redirect_allowed(redirected.url, self.allowed_private):
            raise Dropped(REDIRECT_REFUSED, f"{request.url} -> {redirected.url}")
        return super()._redirect(redirected, request, reason)


def retry_after_seconds(value: bytes | str | None, now: float | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


class RetryAfterMiddleware(RetryMiddleware):
    """Scrapy's retry middleware that waits as long as a 429/503 ``Retry-After`` asks.

    The wait is capped by ``RETRY_AFTER_MAX`` seconds; without the header the
    usual immediate retry (with AutoThrottle slowing the domain) applies.
    """

    def __init__(self, settings):
        super().__init__(settings)
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX")

    async def process_response(self, request, response, spider=None):
        if request.meta.get("dont_retry") or response.status not in self.retry_http_codes:
            return response
        wait = retry_after_seconds(response.headers.get(b"Retry-After"))
        retry = get_retry_request(request, spider=self.crawler.spider, reason=response_status_message(response.status),
                                  max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
                                  priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
                                  stats_base_key="retry")
        if retry is None:
            return response
        if wait:
            self.crawler.stats.inc_value("retry/retry_after_waits")
            await asyncio.sleep(min(wait, self.retry_after_max))
        return retry


class ImgurQuotaMiddleware:
    """Slow down as imgur's rate-limit headers run low; stop before they run out.

    Reads ``X-RateLimit-ClientRemaining`` / ``X-RateLimit-UserRemaining`` on
    every API answer. Under ``IMGUR_QUOTA_SLOWDOWN`` remaining requests the
    API's download delay grows; at ``IMGUR_QUOTA_RESERVE`` further API requests
    (those with ``meta["imgur_api"]``) are refused with reason
    ``quota_exhausted``, so the crawl ends cleanly once the images already
    found are stored.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        self.reserve = crawler.settings.getint("IMGUR_QUOTA_RESERVE")
        self.slowdown = crawler.settings.getint("IMGUR_QUOTA_SLOWDOWN")
        self.exhausted = False

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        if self.exhausted and request.meta.get("imgur_api"):
            raise Dropped(QUOTA_EXHAUSTED)

    def process_response(self, request, response, spider=None):
        remaining = [int(v) for k in (b"X-RateLimit-ClientRemaining", b"X-RateLimit-UserRemaining")
                     if (v := response.headers.get(k)) is not None and v.strip().lstrip(b"-").isdigit()]
        if not remaining:
            return response
        low = min(remaining)
        self.crawler.stats.set_value("imgur/quota_remaining", low)
        if low <= self.reserve:
            self.exhausted = True
            self.crawler.stats.set_value("imgur/stopped_for_quota", True)
        elif low <= self.slowdown:
            slot = self.crawler.engine.downloader.slots.get(request.meta.get("download_slot") or urlsplit(request.url).hostname)
            if slot is not None:
                slot.delay = max(slot.delay, self.slowdown / max(low, 1))
                self.crawler.stats.inc_value("imgur/quota_slowdowns")
        return response


class MalformedAnswerMiddleware:
    """Retry an imgur API answer that is not its JSON (cut short, an HTML page served with 200) like a 5xx answer.

    Once the retries (``RETRY_TIMES``) are spent the request fails with reason ``malformed_answer``, so its
    errback handles it like a 5xx that outlived its retries: a gallery page stops the paging (a re-run starts
    from it), an album is one record.
    """

    def __init__(self, crawler):
        self.crawler = crawler
        s = crawler.settings
        self.max_retry_times = s.getint("RETRY_TIMES") if s.getbool("RETRY_ENABLED") else 0
        self.priority_adjust = s.getint("RETRY_PRIORITY_ADJUST")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_response(self, request, response, spider=None):
        if not request.meta.get("imgur_api") or response.status != 200:
            return response
        try:
            api_data(response.body)
        except ValueError:
            retry = None if request.meta.get("dont_retry") else get_retry_request(
                request, spider=self.crawler.spider, reason=MALFORMED_ANSWER,
                max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
                priority_adjust=request.meta.get("priority_adjust", self.priority_adjust))
            if retry is None:
                raise Dropped(MALFORMED_ANSWER, request.url) from None
            return retry
        return response
