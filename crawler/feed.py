"""python -m crawler.feed loc_archive --csv PATH | imgur_meme --pages N  [--redis-url URL] [--manifest-dir DIR]

Pushes one JSON job per CSV row (or per imgur gallery page) into Redis for
distributed ``scrapy crawl`` workers, skipping rows that already have a final
record in the manifests. Re-running it after a worker died re-enqueues exactly
the rows that were lost. Prints what it pushed and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import redis
from scrapy.utils.project import get_project_settings

from processing.cliutil import UsageError, run_main
from processing.manifest import final_keys

from .distributed import jobs_key
from .meme_csv import CsvError
from .spiders.imgur_meme import ImgurMemeSpider
from .spiders.loc_archive import SOURCE as LOC, LocArchiveSpider


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m crawler.feed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spider", choices=(LocArchiveSpider.name, ImgurMemeSpider.name))
    p.add_argument("--csv", help="loc_archive: the Meme Generator file")
    p.add_argument("--limit", type=int, help="loc_archive: first N rows")
    p.add_argument("--ids", help="loc_archive: comma-separated Meme IDs")
    p.add_argument("--pages", type=int, default=10, help="imgur_meme: gallery pages 0..N-1 (default 10)")
    p.add_argument("--redis-url", help="default: the REDIS_URL setting")
    p.add_argument("--manifest-dir", help="default: the MANIFEST_DIR setting")
    p.add_argument("--clear", action="store_true", help="empty the job queue first")
    return p.parse_args(argv)


def loc_jobs(args, done: set) -> tuple[list[dict], int]:
    spider = LocArchiveSpider(csv=args.csv, limit=args.limit, ids=args.ids)
    spider.settings = get_project_settings()
    jobs, skipped = [], 0
    try:
        for row in spider.rows():
            if (LOC, row.meme_id) in done:
                skipped += 1
            else:
                jobs.append(spider.job_for_row(row))
    except CsvError as exc:
        raise UsageError(str(exc)) from None
    return jobs, skipped


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = get_project_settings()
    url = args.redis_url or settings.get("REDIS_URL")
    if not url:
        raise UsageError("no Redis: pass --redis-url redis://HOST:PORT/DB or set REDIS_URL")
    manifest_dir = args.manifest_dir or settings.get("MANIFEST_DIR")
    done = final_keys([manifest_dir]) if manifest_dir and Path(manifest_dir).is_dir() else set()
    if args.spider == LocArchiveSpider.name:
        if not args.csv:
            raise UsageError("loc_archive needs --csv PATH")
        jobs, skipped = loc_jobs(args, done)
    else:
        jobs, skipped = [ImgurMemeSpider.job_for_page(p) for p in range(args.pages)], 0
    server = redis.Redis.from_url(url)
    try:
        server.ping()
    except redis.RedisError as exc:
        raise UsageError(f"cannot reach Redis at {url}: {exc}") from None
    key = jobs_key(args.spider)
    with server.pipeline() as pipe:
        if args.clear:
            pipe.delete(key)
        for start in range(0, len(jobs), 1000):
            pipe.rpush(key, *(json.dumps(j) for j in jobs[start:start + 1000]))
        pipe.execute()
    print(f"pushed {len(jobs)} jobs to {key}; skipped {skipped} with a final record"
)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("crawler.feed", main))
