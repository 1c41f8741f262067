"""Helpers shared by the tests and the benchmarks: generated pictures, LoC- and imgur-style
fixtures for the local mirror, and the real ``scrapy crawl`` run against them.

Importable from anywhere (``from tests.support.testkit import ...``); nothing here runs at import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from crawler.mirror import Capture, ImgurImage, ImgurSite, LocItem

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MEME_SHARED_DATA", ROOT.parent / "shared" / "data"))
CDN = "http://cdn.meme.am/instances/250x250/{}.jpg"
TS = "20150508184553"
OLD = "20120101000000"
RANGE = "19960101000000-20160901235959"
# loc_corpus faults that are about the CSV row, not the archive: (field, value written instead)
ROW_FAULTS = {"bad_ts_month": ("ts", "20151399000000"), "bad_ts_nines": ("ts", "99999999999999"),
              "bad_md5": ("MD5 Hash", "not-a-hash"), "bad_size": ("File Size (In Bytes)", "12kb")}


def shared_data_missing() -> str | None:
    """Why the real data cannot be used, or None when it is there."""
    if (SHARED / "MANIFEST.md").exists():
        return None
    return f"real data not found at {SHARED} (../shared/data from the repo root, or set MEME_SHARED_DATA)"


def system_packages_missing(what: str, *packages: str) -> str:
    """A skip reason for a test whose Debian packages are not installed: the one apt-get line, and who runs it."""
    return (f"{what} not installed: sudo apt-get install -y {' '.join(packages)} "
            f"(scripts/system-deps does it as root or with sudo; make test runs it)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def picture(width: int, height: int, seed: int = 0, caption: str | None = "TOP TEXT") -> Image.Image:
    """A random-noise RGB picture, optionally with a white caption bar."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if caption:
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, width, max(1, height // 8)], fill=(255, 255, 255))
        d.text((4, 2), caption, fill=(0, 0, 0))
    return img


def image_bytes(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


def meme_jpeg(seed: int) -> bytes:
    return image_bytes(picture(250, 250, seed=seed, caption=f"MEME {seed}"), "JPEG", quality=90)


def captioned_dataset(root: Path, split: str = "0.6,0.2,0.2", photos: int = 0) -> Path:
    """40 captioned 'memes' (4 templates), 60 tiny noise pictures and ``photos`` uncaptioned 200x150 pictures,
    built by the real builder into root/ds.h5."""
    from processing import build_h5

    for i in range(40):
        save(picture(200, 200, seed=i, caption="ONE DOES NOT SIMPLY"), root / "memes" / f"t{i % 4}" / f"{i}.jpg")
    for i in range(60):
        save(picture(32, 32, seed=1000 + i, caption=None), root / "tiny" / f"c{i % 3}" / f"{i}.png")
    for i in range(photos):
        save(picture(200, 150, seed=2000 + i, caption=None), root / "photos" / f"p{i % 3}" / f"{i}.jpg")
    out = root / "ds.h5"
    more = ["--non-memes", str(root / "photos")] if photos else []
    assert build_h5.main(["--memes", str(root / "memes"), "--tiny", str(root / "tiny"), *more, "--out", str(out),
                          "--split", split, "--no-progress", "--workers", "1"]) == 0
    return out


def loc_corpus(rows: list[tuple[str, str | None]], calendar_form: bool = False):
    """rows: (meme_id, fault). Returns (LocItems, csv rows as dicts).

    ``fault`` is a ``LocItem.fault`` (what the archive does), one of the
    scenarios below, a ``ROW_FAULTS`` key (a broken CSV field), or
    ``idx_<index_fault>`` (the CDX answer misbehaves; the nearest capture is right).
    """
    items, csv_rows = [], []
    for meme_id, fault in rows:
        seed = int(meme_id)
        body = meme_jpeg(seed)
        original = CDN.format(meme_id)
        captures = [Capture(TS, body)]
        expected = body
        row_fault, index_fault = ROW_FAULTS.get(fault or ""), None
        if row_fault:
            fault = None
        elif (fault or "").startswith("idx_"):
            index_fault, fault = fault[4:], None
            captures = [Capture(OLD, meme_jpeg(seed + 1000)), Capture(TS, body)]
        elif fault in ("short_then_older", "html_then_older", "503_then_older"):
            # the row's own capture misbehaves; an older unrelated capture is listed too
            captures = [Capture(TS, body, fault=fault.split("_then_")[0].replace("html", "html_as_jpg")),
                        Capture(OLD, meme_jpeg(seed + 1000))]
            fault = None
        elif fault == "redirect_then_listed":    # no capture at TS: a 302 to the nearest, which the index lists too
            captures = [Capture("20150601000000", meme_jpeg(seed + 1000)), Capture("20100101000000",
                                                                                   meme_jpeg(seed + 2000))]
            fault = None
        elif fault == "same_digest":             # two wrong captures with one payload, then the right one
            wrong = meme_jpeg(seed + 1000)
            captures = [Capture("20150601000000", wrong), Capture("20150401000000", wrong),
                        Capture("20140101000000", body)]
            fault = None
        elif fault == "skip_listed":             # a 404 capture and an unresolvable revisit nearer than the right one
            captures = [Capture("20150601000000", meme_jpeg(seed + 1000), status=404),
                        Capture("20150401000000", meme_jpeg(seed + 2000), revisit=True),
                        Capture("20140101000000", body)]
            fault = None
        elif fault == "long_url":
            original = CDN.format(meme_id) + "?" + "x" * 300
            fault = None
        elif fault == "md5_wrong_then_right":    # nearest capture has other bytes; an older one verifies
            captures = [Capture(TS, meme_jpeg(seed + 1000)), Capture("20140101000000", body)]
            fault = None
        elif fault == "md5_wrong":
            captures = [Capture(TS, meme_jpeg(seed + 1000))]
            fault = None
        elif fault == "calendar":              # answers with a calendar, not a redirect
            captures = [Capture("20120101000000", meme_jpeg(seed + 2000)), Capture("20150601000000", body)]
        elif fault == "too_large":              # over DOWNLOAD_MAXSIZE
            body = expected = image_bytes(picture(600, 600, seed=seed, caption=None), "PNG")
            captures = [Capture(TS, body, "image/png")]
            fault = None
        elif fault == "no_capture":
            captures = []
            fault = None
        items.append(LocItem(original, captures, fault, index_fault=index_fault))
        ts = row_fault[1] if row_fault and row_fault[0] == "ts" else TS
        archived = (f"http://webarchive.loc.gov/all/{RANGE}*/{original}" if calendar_form and not row_fault
                    else f"http://webarchive.loc.gov/all/{ts}/{original}")
        csv_row = {"Meme ID": meme_id, "Archived URL": archived, "Base Meme Name": f"Template {seed % 3}",
                   "Meme Page URL": f"http://memegenerator.net/instance/{meme_id}",
                   "MD5 Hash": hashlib.md5(expected).hexdigest(), "File Size (In Bytes)": len(expected),
                   "Alternate Text": f"alt {meme_id}"}
        if row_fault and row_fault[0] in csv_row:
            csv_row[row_fault[0]] = row_fault[1]
        csv_rows.append(csv_row)
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
    """The real ``scrapy crawl`` against the mirror; ``timeout`` seconds at most (a hang fails the test)."""
    return subprocess.run(scrapy_cmd(spider, mirror, workdir, args, **settings), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def crawl_stats(stderr: str) -> dict:
    """The stats Scrapy dumps when a crawl closes, as a dict."""
    import ast
    start = stderr.rfind("Dumping Scrapy stats:")
    if start < 0:
        return {}
    text = stderr[stderr.index("{", start):]
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return ast.literal_eval(text[:i + 1].replace("datetime.datetime", "").replace("tzinfo=datetime.timezone.utc", ""))
    return {}


def manifest_records(workdir: Path) -> list[dict]:
    out = []
    for p in sorted((workdir / "manifests").glob("*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def gif_bytes(seed: int) -> bytes:
    frames = [picture(200, 200, seed=seed + k) for k in range(2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def imgur_site(**kw) -> ImgurSite:
    """Pages with images, albums (inline and by endpoint), animated items, a duplicate,
    a removed image, a page malformed once and a throttled page; page 5 is empty."""
    def image(i, ext="jpg", **extra):
        return {"id": i, "title": f"title {i}", "type": f"image/{'jpeg' if ext == 'jpg' else ext}",
                "animated": False, "width": 250, "height": 250, "link": f"{{base}}/i/{i}.{ext}",
                "tags": [{"name": "meme"}, {"name": "funny"}], "is_album": False, **extra}
    images = {f"img{i}": ImgurImage(f"img{i}", meme_jpeg(500 + i)) for i in range(1, 11)}
    images["gif1"] = ImgurImage("gif1", gif_bytes(7), "image/gif")
    images["gone"] = ImgurImage("gone", None)
    pages = [
        [image("img1"), image("img2"),
         {"id": "albA", "is_album": True, "title": "album A", "images": [image("img3"), image("img4")]},
         image("gif1", "gif", animated=True, type="image/gif", mp4="{base}/i/gif1.mp4"),   # every GIF has an mp4
         image("vid1", "mp4", animated=True, type="video/mp4", mp4="{base}/i/vid1.mp4")],
        [{"id": "albB", "is_album": True, "title": "album B", "images_count": 2}, image("img1"), image("gone")],
        [image("img10")],                       # malformed once: retried, then read
        [image("img7")],                        # throttled once with Retry-After
        [image("img8"), image("img9")],
        [],
    ]
    site = ImgurSite(client_id="test-client", pages=pages, images=images,
                     albums={"albB": [image("img5"), image("img6")]}, throttle_pages={3}, malformed_once={2}, **kw)
    return site


def untrained_run(folder: Path, loudness: float = 8.0, report: dict | None = None, arch: str = "memenet") -> Path:
    """A run folder (model.keras, preprocess.json, optionally report.json) holding an untrained ``arch`` model
    (lite0: the ImageNet trunk under an untrained head).

    Its last layer is scaled by ``loudness`` so that different pictures get visibly different probabilities;
    enough for anything that serves or benchmarks a model without caring how good it is.
    """
    from training.model import build_model
    from training.preprocess import Preprocess

    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(arch)
    layer = model.get_layer("probabilities")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * loudness, bias])
    model.save(folder / "model.keras")
    Preprocess(arch=arch).save(folder)
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    return folder


def make_store_folders(args) -> int:
    """One of 8 processes: create the same store folders at the same moment, many times over."""
    root, barrier, rounds = args
    from crawler.pipelines import MemeFilesPipeline
    errors = 0
    for r in range(rounds):
        barrier.wait()
        try:
            store = MemeFilesPipeline.STORE_SCHEMES[""](f"{root}/{r}/files")
            store.persist_file(f"full/ab/{os.getpid()}.jpg", io.BytesIO(b"x"), info=None)
        except FileExistsError:
            errors += 1
    return errors
