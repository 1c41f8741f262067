"""Machine-readable reasons an input did not become a dataset row.

Crawl statuses (written by the crawler into manifests) and build-time skip
reasons share one vocabulary so a summary can add them up.
"""

OK = "ok"

# Build-time reasons.
TOO_SMALL = "too_small"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
DECOMPRESSION_BOMB = "decompression_bomb"
DUPLICATE = "duplicate"
MISSING_FILE = "missing_file"
SHA256_MISMATCH = "sha256_mismatch"
WRONG_SIZE = "wrong_size"

# Crawl-time reasons (the crawler writes these as a record's status).
MD5_MISMATCH = "md5_mismatch"
SIZE_MISMATCH = "size_mismatch"
NO_CAPTURE = "no_capture"
BLOCKED = "blocked"
REMOVED = "removed"
ANIMATED = "animated"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
REDIRECT_REFUSED = "redirect_refused"
TOO_LARGE = "too_large"


def http_reason(status: int) -> str:
    return f"http_{int(status)}"


def is_final(status: str) -> bool:
    """Whether a crawl status should stop a re-run from trying the row again.

    Transient failures (timeouts, dropped connections, 429 and 5xx answers that
    outlived the retries) are worth another try on the next run; everything
    else is a verdict about the row itself.
    """
    if status in (TIMEOUT, CONNECTION_ERROR, "http_429"):
        return False
    return not status.startswith("http_5")


class Rejected(Exception):
    """An input that cannot become a dataset row, with the reason as data."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
