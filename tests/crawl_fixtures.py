"""Build LoC-style and imgur-style fixtures and run the real `scrapy crawl` against them."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, image_bytes, picture
from datasets.mirror import Capture, ImgurImage, ImgurSite, LocItem

CDN = "http://cdn.meme.am/instances/250x250/{}.jpg"
TS = "20150508184553"


def meme_jpeg(seed: int) -> bytes:
    return image_bytes(picture(250, 250, seed=seed, caption=f"MEME {seed}"), "JPEG", quality=90)


def loc_corpus(rows: list[tuple[str, str | None]], calendar_form: bool = False):
    """rows: (meme_id, fault). Returns (LocItems, csv rows as dicts)."""
    items, csv_rows = [], []
    for meme_id, fault in rows:
        seed = int(meme_id)
        body = meme_jpeg(seed)
        original = CDN.format(meme_id)
        captures = [Capture(TS, body)]
        expected = body
        if fault == "md5_wrong_then_right":    # nearest capture has other bytes; an older one verifies
            captures = [Capture(TS, meme_jpeg(seed + 1000)), Capture("20140101000000", body)]
            fault = None
        elif fault == "md5_wrong":
            captures = [Capture(TS, meme_jpeg(seed + 1000))]
            fault = None
        elif fault == "calendar":              # answers with a calendar, not a redirect
            captures = [Capture("20120101000000", meme_jpeg(seed + 2000)), Capture("20150601000000", body)]
        elif fault == "no_capture":
            captures = []
            fault = None
        items.append(LocItem(original, captures, fault))
        archived = (f"http://webarchive.loc.gov/all/19960101000000-20160901235959*/{original}" if calendar_form
                    else f"http://webarchive.loc.gov/all/{TS}/{original}")
        csv_rows.append({"Meme ID": meme_id, "Archived URL": archived, "Base Meme Name": f"Template {seed % 3}",
                         "Meme Page URL": f"http://memegenerator.net/instance/{meme_id}",
                         "MD5 Hash": hashlib.md5(expected).hexdigest(), "File Size (In Bytes)": len(expected),
                         "Alternate Text": f"alt {meme_id}"})
    return items, csv_rows


def write_csv(path: Path, rows: list[dict], *, utf16_tsv: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if utf16_tsv:
        with open(path, "w", encoding="utf-16", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\r\n")
            w.writeheader()
            w.writerows(rows)
    else:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def crawl_settings(mirror, workdir: Path, **extra) -> list[str]:
    settings = {
        "LOC_ARCHIVE": mirror.archive_url, "IMGUR_API": mirror.base_url,
        "FILES_STORE": str(workdir / "files"), "MANIFEST_DIR": str(workdir / "manifests"),
        "REDIRECT_ALLOWED_PRIVATE_HOSTS": "127.0.0.1", "AUTOTHROTTLE_ENABLED": "False",
        "DOWNLOAD_DELAY": "0", "CONCURRENT_REQUESTS_PER_DOMAIN": "8", "RETRY_AFTER_MAX": "2",
        "LOG_LEVEL": "INFO", "TELNETCONSOLE_ENABLED": "False", **extra,
    }
    out = []
    for k, v in settings.items():
        out += ["-s", f"{k}={v}"]
    return out


def scrapy_cmd(spider: str, mirror, workdir: Path, args: dict | None = None, **settings) -> list[str]:
    cmd = [sys.executable, "-m", "scrapy", "crawl", spider, *crawl_settings(mirror, workdir, **settings)]
    for k, v in (args or {}).items():
        cmd += ["-a", f"{k}={v}"]
    return cmd


def run_crawl(spider: str, mirror, workdir: Path, args: dict | None = None, env=None, timeout=180, **settings):
    return subprocess.run(scrapy_cmd(spider, mirror, workdir, args, **settings), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def manifest_records(workdir: Path) -> list[dict]:
    out = []
    for p in sorted((workdir / "manifests").glob("*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out
