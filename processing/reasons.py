"""The one vocabulary of outcomes: why an input did not become a dataset row.

Crawl statuses (written by the crawler into manifests), build-time skip
reasons and per-file errors of ``predict``/``evaluate``/the service all come
from here, so a summary can add them up and the README's table is generated
from ``MEANINGS``. Nothing else in the project writes a reason as a literal.
"""

from __future__ import annotations

import re

OK = "ok"

# ---- the input itself --------------------------------------------------------
MISSING_FILE = "missing_file"
UNREADABLE = "unreadable"
NOT_A_FILE = "not_a_file"
EMPTY_FOLDER = "empty_folder"
TOO_LARGE = "too_large"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
DECOMPRESSION_BOMB = "decompression_bomb"
TOO_SMALL = "too_small"
WRONG_SIZE = "wrong_size"
UNSUPPORTED_SIZE = "unsupported_size"
DUPLICATE = "duplicate"
SHA256_MISMATCH = "sha256_mismatch"
TORN_MANIFEST_LINE = "torn_manifest_line"
BAD_ROW = "bad_row"
DUPLICATE_ID = "duplicate_id"

# ---- crawling ------------------------------------------------------------------
MD5_MISMATCH = "md5_mismatch"
SIZE_MISMATCH = "size_mismatch"
NO_CAPTURE = "no_capture"
NO_LINK = "no_link"
BLOCKED = "blocked"
REMOVED = "removed"
ANIMATED = "animated"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
REDIRECT_REFUSED = "redirect_refused"
ROBOTS_FORBIDDEN = "robots_forbidden"
QUOTA_EXHAUSTED = "quota_exhausted"
MALFORMED_ANSWER = "malformed_answer"
IGNORED = "ignored"
URL_TOO_LONG = "url_too_long"
OFFSITE = "offsite"
FILTERED_DUPLICATE = "filtered_duplicate"
STORE_ERROR = "store_error"

MEANINGS: dict[str, str] = {
    OK: "stored (crawl) or written as a row (build)",
    MISSING_FILE: "the file named by a manifest or argument does not exist (or is a dangling link)",
    UNREADABLE: "the file exists but cannot be read (permission denied, I/O error)",
    NOT_A_FILE: "not a regular file (FIFO, device, socket): never read",
    EMPTY_FOLDER: "a folder given to predict that holds no files",
    TOO_LARGE: "more bytes than the cap (DOWNLOAD_MAXSIZE when crawling, --max-bytes when reading files)",
    NOT_AN_IMAGE: "the bytes are not an image format Pillow knows (HTML, text, a video)",
    TRUNCATED: "an image cut short (a partial download or file)",
    CORRUPT: "an image whose data does not decode",
    DECOMPRESSION_BOMB: "more pixels than the pixel cap (--max-pixels of build_h5, predict, evaluate and the service "
                        "/ IMAGE_MAX_PIXELS; checked from the header, above Pillow's own 89 Mpx cap too)",
    TOO_SMALL: "short side below --min-side",
    WRONG_SIZE: "a tiny picture that is not 32x32",
    UNSUPPORTED_SIZE: "a shape the model cannot take at native size (a side too thin for its pooling)",
    DUPLICATE: "the same bytes (sha256) as an earlier row: stored once",
    SHA256_MISMATCH: "the stored file no longer has the sha256 its manifest recorded",
    TORN_MANIFEST_LINE: "a manifest line that is not a record (a crawl killed mid-write, a damaged or foreign file)",
    BAD_ROW: "an input row that cannot be used (bad id, URL or timestamp, a missing or bad MD5 or size, undecodable bytes)",
    DUPLICATE_ID: "a later input row with an earlier row's id but other contents (the earlier row is crawled)",
    MD5_MISMATCH: "the archived bytes have another MD5 than the row promised",
    SIZE_MISMATCH: "the archived bytes have another size than the row promised",
    NO_CAPTURE: "the archive holds no capture of the row's URL",
    NO_LINK: "an imgur item without an image link",
    BLOCKED: "a bot-protection (challenge) page instead of content",
    REMOVED: "imgur's placeholder for a deleted image",
    ANIMATED: "an animated image or video (kept only with include_animated)",
    TIMEOUT: "no answer in time (transient: tried again on re-run)",
    CONNECTION_ERROR: "the connection failed (transient: tried again on re-run)",
    REDIRECT_REFUSED: "a redirect to a non-http(s) or private address",
    ROBOTS_FORBIDDEN: "robots.txt forbids the URL",
    QUOTA_EXHAUSTED: "imgur's API quota reached its reserve (transient: tried again on re-run)",
    MALFORMED_ANSWER: "an imgur API answer that is not its JSON (cut short, an HTML page) after its retries "
                      "(transient: tried again on re-run)",
    IGNORED: "a request Scrapy dropped for a reason it did not name",
    URL_TOO_LONG: "the URL is longer than URLLENGTH_LIMIT: never requested",
    OFFSITE: "the URL is outside the spider's allowed domains: never requested",
    FILTERED_DUPLICATE: "the request was dropped as a duplicate by Scrapy's dupefilter",
    STORE_ERROR: "the bytes were fine but could not be written to FILES_STORE",
    "http_NNN": "the server answered with HTTP status NNN (429 and 5xx are transient)",
}

ALL: frozenset[str] = frozenset(k for k in MEANINGS if k != "http_NNN")

class Stop:
    """Why a crawl stopped paging: the ``<source>/stop_reason`` stat, never a row's status (so not in ``ALL``)."""

    GALLERY_END = "gallery_end"
    NO_NEW_ITEMS = "no_new_items"
    AUTH_REFUSED = "auth_refused"
    PAGE_FAILED = "page_failed"
    QUOTA_EXHAUSTED = QUOTA_EXHAUSTED


STOP_MEANINGS: dict[str, str] = {
    Stop.GALLERY_END: "the gallery answered an empty page: every page was read",
    Stop.NO_NEW_ITEMS: "IMGUR_STALE_PAGES pages in a row brought no item not seen before (a gallery repeating itself)",
    Stop.AUTH_REFUSED: "imgur refused the client id (401, a 403 with its client-id error, or any 403 to a gallery page): "
                       "the crawl stops, exit 1",
    Stop.PAGE_FAILED: "a gallery page failed after its retries (see the log); a re-run starts from that page",
    Stop.QUOTA_EXHAUSTED: "imgur's API quota reached its reserve; a re-run continues from the paging state",
}
TRANSIENT: frozenset[str] = frozenset({TIMEOUT, CONNECTION_ERROR, QUOTA_EXHAUSTED, MALFORMED_ANSWER, "http_429"})

_HTTP = re.compile(r"http_[1-5]\d\d")


def http_reason(status: int) -> str:
    return f"http_{int(status)}"


def is_known(status: str) -> bool:
    """Whether ``status`` belongs to the vocabulary (``ok``, a named reason or ``http_NNN``)."""
    return status in ALL or bool(_HTTP.fullmatch(status))


def is_final(status: str) -> bool:
    """Whether a crawl status should stop a re-run from trying the row again.

    Transient failures (timeouts, dropped connections, quota stops, 429 and
    5xx answers that outlived the retries) are worth another try on the next
    run; everything else is a verdict about the row itself.
    """
    return status not in TRANSIENT and not status.startswith("http_5")


def markdown_table() -> str:
    """The README's table of reasons, generated from ``MEANINGS`` (a test keeps the README in step)."""
    lines = ["| status | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in MEANINGS.items()]
    return "\n".join(lines)


class Rejected(Exception):
    """An input that cannot become a dataset row, with the reason as data."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
