"""JOBDIR is a cache; the manifests are the truth.

Every crawl rebuilds its work when it starts: the spider reads its input
again and resume (crawler/resume.py) skips the rows with a final record, so
each row still to do is requested again. Scrapy's saved request queue
(``JOBDIR/requests.queue``) can only add to that requests the restart issues
anyway (rows fetched twice), and a crawl killed with kill -9 leaves it torn:
its files change as requests come and go but are described (``active.json``,
``info.json``) only when the crawl closes, so the next crawl replays stale
requests (rows recorded twice), never reaches others (rows never recorded) or
fails on a torn record (``unpack requires a buffer of 4 bytes``).

So ``MemoryQueueScheduler`` keeps the request queue in memory (the lazy start,
crawler/lazystart.py, keeps it to a few requests), and JOBDIR keeps what
Scrapy keeps besides: the dupefilter's fingerprints (``requests.seen``) and
the spider's state (``spider.state``). Before the crawl opens them,
``repair_job_dir`` puts right what a killed crawl leaves there, one line for
each thing it does.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

from scrapy.core.scheduler import Scheduler
from scrapy.utils.job import job_dir

logger = logging.getLogger(__name__)

FINGERPRINT_LENGTH_BYTES = 2   # requests.seen: each fingerprint follows its length, 2 bytes big-endian (Scrapy)


def whole_records_length(data: bytes) -> int:
    """How many leading bytes of ``requests.seen`` are whole records (the rest is a record cut short)."""
    end = 0
    while end + FINGERPRINT_LENGTH_BYTES <= len(data):
        following = end + FINGERPRINT_LENGTH_BYTES + int.from_bytes(data[end:end + FINGERPRINT_LENGTH_BYTES], "big")
        if following > len(data):
            break
        end = following
    return end


def repair_job_dir(jobdir: Path) -> list[str]:
    """Put right what a killed crawl left in ``jobdir``; one line for each thing done.

    * a saved request queue (``requests.queue``, written before this scheduler or by plain Scrapy) is removed:
      the rows it held are requested again from the input, as the manifests say;
    * ``requests.seen`` ending in a torn record is cut back to its whole records (appending after a torn
      record would garble every fingerprint after it);
    * a ``spider.state`` that does not unpickle (a crawl killed while saving it) is removed.
    """
    said = []
    queue = jobdir / "requests.queue"
    if queue.is_dir():
        shutil.rmtree(queue)
        said.append(f"JOBDIR {jobdir}: the request queue a previous crawl left is not replayed (a crawl killed "
                    f"with kill -9 leaves it torn): removed; the rows without a final record in the manifests "
                    f"are requested again from the input")
    seen = jobdir / "requests.seen"
    if seen.is_file():
        data = seen.read_bytes()
        whole = whole_records_length(data)
        if whole < len(data):
            with open(seen, "r+b") as fh:
                fh.truncate(whole)
            said.append(f"JOBDIR {jobdir}: requests.seen ended in a torn record (a crawl killed while writing it): "
                        f"cut back to its whole records")
    state = jobdir / "spider.state"
    if state.is_file():
        try:
            with open(state, "rb") as fh:
                pickle.load(fh)   # the crawl's own file, which Scrapy unpickles next
        except Exception as exc:  # noqa: BLE001 - whatever a torn pickle raises
            state.unlink()
            said.append(f"JOBDIR {jobdir}: spider.state does not load ({type(exc).__name__}: a crawl killed "
                        f"while saving it?): removed; the spider starts with an empty state")
    return said


class MemoryQueueScheduler(Scheduler):
    """Scrapy's scheduler with JOBDIR put right first and the request queue in memory (see the module)."""

    @classmethod
    def from_crawler(cls, crawler):
        if path := job_dir(crawler.settings):
            for line in repair_job_dir(Path(path)):
                logger.warning(line)
        return super().from_crawler(crawler)   # opens the dupefilter (requests.seen)

    def __init__(self, dupefilter, jobdir: str | None = None, **kwargs):
        super().__init__(dupefilter, jobdir=None, **kwargs)   # no disk queue: a restart rebuilds the requests
