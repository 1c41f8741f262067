"""Our loc_archive spider vs a faithful re-implementation of the original threaded script, and what
each way of finding captures costs.

    python benchmarks/crawl_loc.py [--rows 2000] [--latency 0.05] [--resolution-rows 300]

Both resolve the same rows against the same local archive (127.0.0.1, every
answer delayed by --latency seconds). Each row's archive holds its right
capture and an older, different one, like the real archive's repeated
captures. Measured in one run: rows resolved per second, HTTP requests per
resolved row, bytes transferred per row, and peak memory.

Then requests per resolved row by row kind, on an archive with only calendar
pages (OpenWayback) vs one with a CDX index (pywb), same rows:
concrete-timestamp rows, date-range rows (the official file's form), and
rows whose first capture fails (the archive also holds a repeat of the wrong
payload, a 404 capture and another wrong capture nearer than the right one).
Targets: <= 1.1 on concrete rows, <= 2.1 on range rows, fewer with the index
than with the calendar on failing rows. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.memory import PeakMemory  # noqa: E402
from tests.support.testkit import crawl_settings, manifest_records, meme_jpeg, write_csv  # noqa: E402
from crawler.mirror import Capture, LocItem, Mirror  # noqa: E402

TS = "20150508184553"


def corpus(n: int):
    items, rows = [], []
    bodies = [meme_jpeg(i % 50) for i in range(50)]
    for i in range(n):
        meme_id = str(20_000_000 + i)
        body = bodies[i % 50] + meme_id.encode()   # unique bytes per row, still a JPEG prefix
        original = f"http://cdn.meme.am/instances/250x250/{meme_id}.jpg"
        items.append(LocItem(original, [Capture("20120101000000", bodies[(i + 1) % 50]), Capture(TS, body)]))
        rows.append({"Meme ID": meme_id, "Archived URL": f"http://webarchive.loc.gov/all/{TS}/{original}",
                     "Base Meme Name": "Bench", "Meme Page URL": "", "MD5 Hash": hashlib.md5(body).hexdigest(),
                     "File Size (In Bytes)": len(body), "Alternate Text": ""})
    return items, rows


def resolution_corpus(kind: str, n: int):
    """Rows of one kind (concrete, range, failing_first) and their captures."""
    items, rows = [], []
    bodies = [meme_jpeg(i % 50) for i in range(50)]
    for i in range(n):
        meme_id = str(30_000_000 + i)
        body = bodies[i % 50] + meme_id.encode()
        wrong, other = bodies[(i + 1) % 50] + b"w", bodies[(i + 2) % 50] + b"o"
        original = f"http://cdn.meme.am/instances/250x250/{meme_id}.jpg"
        if kind == "failing_first":
            captures = [Capture(TS, wrong), Capture("20150420000000", wrong, status=404),
                        Capture("20150401000000", wrong), Capture("20150301000000", other),
                        Capture("20140101000000", body)]
        else:
            captures = [Capture("20120101000000", other), Capture(TS, body)]
        items.append(LocItem(original, captures))
        where = "19960101000000-20160901235959*" if kind == "range" else TS
        rows.append({"Meme ID": meme_id, "Archived URL": f"http://webarchive.loc.gov/all/{where}/{original}",
                     "Base Meme Name": "Bench", "Meme Page URL": "", "MD5 Hash": hashlib.md5(body).hexdigest(),
                     "File Size (In Bytes)": len(body), "Alternate Text": ""})
    return items, rows


def requests_per_row(kind: str, n: int, index: str | None, latency: float, concurrency: int) -> dict:
    items, rows = resolution_corpus(kind, n)
    work = Path(tempfile.mkdtemp())
    write_csv(work / "rows.tsv", rows)
    with Mirror(items, latency=latency, index=index) as mirror:
        cmd = [sys.executable, "-m", "scrapy", "crawl", "loc_archive", "-a", f"csv={work / 'rows.tsv'}",
               *crawl_settings(mirror, work, CONCURRENT_REQUESTS=str(concurrency), LOG_LEVEL="WARNING",
                               CONCURRENT_REQUESTS_PER_DOMAIN=str(concurrency),
                               LOC_INDEX="calendar" if index is None else "auto")]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        seconds = time.perf_counter() - t0
        made = sum(v for k, v in mirror.hits.items() if k != "/robots.txt")
    ok = sum(r["status"] == "ok" for r in manifest_records(work))
    return {"resolved": ok, "rows": n, "requests_per_row": round(made / max(ok, 1), 3),
            "rows_s": round(ok / seconds, 1)}


def seed_script(archive: str, rows: list[dict], threads: int = 240) -> int:
    """The original: 240 threads; per row, read the calendar, download every capture in full to see whether it
    exists, keep the one whose MD5 matches; everything is kept in memory and written at the end."""
    import requests

    results = {}

    def resolve(row):
        original = re.sub(r"^.*?/all/[^/]+/", "", row["Archived URL"])
        session = requests.Session()
        calendar = session.get(f"{archive}/*/{original}", timeout=60).text
        links = re.findall(r'<div class="day"><a href="([^"]+)"', calendar)
        found = None
        for link in links:
            body = session.get(archive.rsplit("/all", 1)[0] + link, timeout=60).content   # follows the redirect
            if hashlib.md5(body).hexdigest() == row["MD5 Hash"]:
                found = body
        results[row["Meme ID"]] = found

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(resolve, rows))
    return sum(v is not None for v in results.values())


def measure(fn):
    """(result, wall seconds, peak RSS of this process and its children) of ``fn()``."""
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return out, seconds, memory.peak_rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=64, help="our spider's CONCURRENT_REQUESTS(_PER_DOMAIN)")
    p.add_argument("--resolution-rows", type=int, default=300, help="rows per kind in the calendar-vs-index part")
    args = p.parse_args()
    items, rows = corpus(args.rows)
    work = Path(tempfile.mkdtemp())
    write_csv(work / "rows.tsv", rows)
    res = {"rows": args.rows, "latency_s": args.latency}

    with Mirror(items, latency=args.latency) as mirror:
        cmd = [sys.executable, "-m", "scrapy", "crawl", "loc_archive", "-a", f"csv={work / 'rows.tsv'}",
               *crawl_settings(mirror, work, CONCURRENT_REQUESTS=str(args.concurrency),
                               CONCURRENT_REQUESTS_PER_DOMAIN=str(args.concurrency), LOG_LEVEL="WARNING")]
        _, seconds, peak = measure(lambda: subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True))
        ok = sum(r["status"] == "ok" for r in manifest_records(work))
        requests_made = sum(v for k, v in mirror.hits.items() if k != "/robots.txt")
        res.update(ours_rows_s=round(ok / seconds, 1), ours_requests_per_row=round(requests_made / ok, 3),
                   ours_kb_per_row=round(mirror.bytes_sent / ok / 1024, 1), ours_peak_mb=round(peak / 2**20),
                   ours_resolved=ok)

    with Mirror(items, latency=args.latency) as mirror:
        ok, seconds, peak = measure(lambda: seed_script(mirror.archive_url, rows))
        requests_made = sum(mirror.hits.values())
        res.update(seed_rows_s=round(ok / seconds, 1), seed_requests_per_row=round(requests_made / ok, 3),
                   seed_kb_per_row=round(mirror.bytes_sent / ok / 1024, 1), seed_peak_mb=round(peak / 2**20),
                   seed_resolved=ok)
    res["rows_s_ratio"] = round(res["ours_rows_s"] / res["seed_rows_s"], 2)
    res["requests_ratio"] = round(res["seed_requests_per_row"] / res["ours_requests_per_row"], 2)
    res["bytes_ratio"] = round(res["seed_kb_per_row"] / res["ours_kb_per_row"], 2)
    print(f"ours: {res['ours_rows_s']} rows/s, {res['ours_requests_per_row']} requests/row (target <= 1.1), "
          f"{res['ours_kb_per_row']} KB/row, peak {res['ours_peak_mb']} MB")
    print(f"seed: {res['seed_rows_s']} rows/s, {res['seed_requests_per_row']} requests/row, "
          f"{res['seed_kb_per_row']} KB/row, peak {res['seed_peak_mb']} MB")
    print(f"ratios: x{res['rows_s_ratio']} rows/s, x{res['requests_ratio']} fewer requests, "
          f"x{res['bytes_ratio']} fewer bytes")
    costs = {}
    for kind in ("concrete", "range", "failing_first"):
        for mode, index in (("calendar", None), ("index", "pywb")):
            costs[f"{kind}/{mode}"] = requests_per_row(kind, args.resolution_rows, index, args.latency,
                                                      args.concurrency)
            c = costs[f"{kind}/{mode}"]
            print(f"{kind:>13} rows, {mode:>8}: {c['requests_per_row']} requests/row, "
                  f"{c['resolved']}/{c['rows']} resolved, {c['rows_s']} rows/s")
    res["resolution"] = costs
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
