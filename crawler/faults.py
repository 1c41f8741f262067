"""Turn what went wrong in a download into a reason string (errors as data)."""

from __future__ import annotations

from scrapy.exceptions import (DownloadCancelledError, DownloadTimeoutError, IgnoreRequest,
                               ResponseDataLossError)
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import TCPTimedOutError, TimeoutError

from processing import reasons

_CHALLENGE_MARKERS = (b"cf-chl", b"challenge-platform", b"just a moment", b"attention required",
                      b"cf-browser-verification", b"captcha")


def is_challenge(response: Response) -> bool:
    """A bot-protection page (Cloudflare-style 403/503 HTML) rather than content."""
    if response.status not in (403, 429, 503):
        return False
    body = response.body[:20000].lower()
    return any(marker in body for marker in _CHALLENGE_MARKERS) or b"cf-ray" in b" ".join(
        k.lower() for k in response.headers.keys())


def looks_like_html(response: Response) -> bool:
    ctype = response.headers.get(b"Content-Type", b"").lower()
    head = response.body[:512].lstrip().lower()
    return b"html" in ctype or head.startswith((b"<!doctype html", b"<html"))


class Dropped(IgnoreRequest):
    """A request a middleware refused, carrying the reason as data (never parsed from text)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def reason_for_failure(failure) -> str:
    exc = failure.value
    if isinstance(exc, HttpError):
        return reasons.BLOCKED if is_challenge(exc.response) else reasons.http_reason(exc.response.status)
    if isinstance(exc, (DownloadTimeoutError, TimeoutError, TCPTimedOutError)):
        return reasons.TIMEOUT
    if isinstance(exc, ResponseDataLossError):
        return reasons.TRUNCATED
    if isinstance(exc, DownloadCancelledError):
        return reasons.TOO_LARGE  # Scrapy cancels downloads over DOWNLOAD_MAXSIZE
    if isinstance(exc, Dropped):
        return exc.reason
    if isinstance(exc, IgnoreRequest):
        return reasons.IGNORED
    return reasons.CONNECTION_ERROR
