"""python -m crawler.feed loc_archive --csv PATH | imgur_meme (--pages N | --urls FILE)  [-s NAME=VALUE ...]

Pushes one job per CSV row (per gallery page, or per listed imgur link) into
Redis for distributed ``scrapy crawl`` workers. It reads the same Scrapy
project settings as the workers (``-s NAME=VALUE`` overrides them, as for
``scrapy crawl``), so it reads the workers' manifests (``MANIFEST_DIR``, a
folder they all share) and Redis (``REDIS_URL``).

Feeding is idempotent: a row with a final record in the manifests, or done,
queued or claimed by a live worker in Redis, is not pushed again; rows claimed
by a dead worker are pushed again (see crawler/distributed.py). So it is safe
to run while a crawl is live, and re-running it after a worker died
re-enqueues exactly the rows that were lost. Prints what it pushed and skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scrapy.utils.project import get_project_settings

from processing.cliutil import ArgumentParser, UsageError, count, positive_int, run_main
from processing.digestset import DigestSet
from processing.manifest import final_digests, key_digest

from .distributed import UNTIL_PARSED, UNTIL_RECORD, Keys, connect, feed_jobs, job_key, redis_url_problem
from .imgur_links import LinkListError, read_link_list, unique_links
from .meme_csv import CsvError
from .spiders.imgur_meme import SOURCE as IMGUR, ImgurMemeSpider
from .spiders.loc_archive import SOURCE as LOC, LocArchiveSpider, meme_ids, record_id

SPIDERS = {spider.name: spider for spider in (LocArchiveSpider, ImgurMemeSpider)}


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m crawler.feed", description=__doc__)
    p.add_argument("spider", choices=tuple(SPIDERS))
    p.add_argument("--csv", help="loc_archive: the Meme Generator file")
    p.add_argument("--limit", type=count, help="loc_archive: first N rows")
    p.add_argument("--ids", help="loc_archive: comma-separated Meme IDs")
    p.add_argument("--pages", type=positive_int, default=10, help="imgur_meme: gallery pages 0..N-1 (default 10)")
    p.add_argument("--urls", help="imgur_meme: a list of i.imgur.com links, one job per distinct link")
    p.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                   help="a Scrapy setting, as for scrapy crawl (REDIS_URL, MANIFEST_DIR, ...)")
    p.add_argument("--redis-url", help="same as -s REDIS_URL=URL")
    p.add_argument("--manifest-dir", help="same as -s MANIFEST_DIR=DIR")
    p.add_argument("--clear", action="store_true",
                   help="forget the spider's queue, claims and done jobs in Redis first (only with no worker running)")
    return p.parse_args(argv)


def project_settings(args):
    settings = get_project_settings()
    pairs = list(args.settings)
    for name, value in (("REDIS_URL", args.redis_url), ("MANIFEST_DIR", args.manifest_dir)):
        if value:
            pairs.append(f"{name}={value}")
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-s takes NAME=VALUE, got {pair!r}")
        settings.set(name, value, priority="cmdline")
    return settings


def loc_jobs(args, settings, final: DigestSet) -> tuple[list, int]:
    spider = LocArchiveSpider(csv=args.csv, limit=args.limit, ids=args.ids)
    spider.settings = settings
    jobs, skipped = [], 0
    try:
        for row in spider.rows():
            if row.repeat_of:               # the same row listed again: its one record is the earlier line's
                continue
            record = record_id(row)         # a repeated ID with other contents has a record (and a job) of its own
            if key_digest((LOC, record)) in final:
                skipped += 1
            else:
                jobs.append((job_key(LOC, record), UNTIL_RECORD, spider.job_for_row(row)))
    except CsvError as exc:
        raise UsageError(str(exc)) from None
    return jobs, skipped


def link_jobs(path: str, final: DigestSet) -> tuple[list, int]:
    """One job per distinct listed link (repeats are recorded once, as by the spider)."""
    try:
        links = read_link_list(path)
    except LinkListError as exc:
        raise UsageError(str(exc)) from None
    jobs, skipped = [], 0
    for link in unique_links(links)[0]:
        if key_digest((IMGUR, link.source_id)) in final:
            skipped += 1
        else:
            jobs.append((job_key(IMGUR, link.source_id), UNTIL_RECORD, ImgurMemeSpider.job_for_link(link)))
    return jobs, skipped


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.spider == LocArchiveSpider.name and not args.csv:
        raise UsageError("loc_archive needs --csv PATH")
    if args.ids is not None:
        try:
            meme_ids(args.ids)
        except ValueError as exc:
            raise UsageError(f"--ids {exc}") from None
    settings = project_settings(args)
    url = settings.get("REDIS_URL")
    if not url:
        raise UsageError("no Redis: pass -s REDIS_URL=redis://HOST:PORT/DB (or --redis-url), as for the workers")
    manifest_dir = Path(settings.get("MANIFEST_DIR"))
    if not manifest_dir.is_dir():
        raise UsageError(f"manifest folder {manifest_dir} does not exist: pass the workers' shared MANIFEST_DIR "
                         f"(-s MANIFEST_DIR=DIR), or create it for a first crawl")
    final = final_digests([manifest_dir], SPIDERS[args.spider].source)
    if args.spider == LocArchiveSpider.name:
        jobs, skipped = loc_jobs(args, settings, final)
    elif args.urls:
        jobs, skipped = link_jobs(args.urls, final)
    else:
        jobs, skipped = [(f"page/{p}", UNTIL_PARSED, ImgurMemeSpider.job_for_page(p)) for p in range(args.pages)], 0
    timeout = settings.getfloat("REDIS_CONNECT_TIMEOUT")
    problem = redis_url_problem(url, timeout)
    if problem:
        raise UsageError(f"cannot use REDIS_URL={url}: {problem}")
    client = connect(url, timeout)
    keys = Keys(args.spider)
    if args.clear:
        client.delete(*keys.all())
    counts = feed_jobs(client, args.spider, jobs)
    print(f"pushed {counts['pushed']} jobs to {keys.jobs}; skipped {skipped} with a final record in the manifests, "
          f"{counts['queued']} queued, {counts['in_flight']} in flight; "
          f"{counts['lost']} claims of dead workers re-queued{remembered(counts['done'])}")
    return 0


def remembered(done: int) -> str:
    """The rows skipped only because Redis marks them done: an earlier crawl's (another MANIFEST_DIR, a deleted
    manifest), which a new, empty manifest folder would otherwise seem to hold."""
    if not done:
        return ""
    return (f"; skipped {done} done in Redis's memory without a final record in the manifests (an earlier crawl's, "
            f"e.g. with another MANIFEST_DIR: --clear makes Redis forget them)")


if __name__ == "__main__":
    sys.exit(run_main("crawler.feed", main))
