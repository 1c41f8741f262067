"""Full-size rehearsal: the original corpus's sizes through the four commands (issue 15).

    python benchmarks/full_size.py [--scale 1] [--scale 0.1,1] [--no-train] [--keep DIR]

At ``--scale 1`` the local mirror (in this process, a thread) serves 57,652
archive rows shaped like the Meme Generator file and 10,158 imgur links;
``scrapy crawl loc_archive`` and ``scrapy crawl imgur_meme`` run against it at
mirror speed (politeness off: no AutoThrottle, no delay, 8 per domain, robots.txt
still read); ``build_h5`` builds both manifests plus 50,000 pictures from a
generated CIFAR-100 tarball in the official format (``--cifar-md5`` its MD5);
``training.run --epochs 1 --arch original`` runs one epoch from the stream
(``--train-size`` its input size).

The archive mix: 80% verify at the row's own timestamp; 8% have other bytes
there and verify at an older capture found through the CDX index (pywb form);
the rest fail for the documented reasons: 404 with an empty index
(``no_capture``), only other bytes (``size_mismatch``: the size is checked before the MD5), a truncated answer
(``truncated``), HTML served as the image (``not_an_image``). The imgur list:
3% removed (redirect to removed.png), 2% videos (.gifv), 1% animated GIFs, 1%
listed twice. Pictures are distinct 128x128 JPEGs of ~2.5 KB so the mirror stays
small.

Per stage it prints wall time, rows/s, peak memory of the stage's whole process
tree (sampled every 50 ms; the mirror in this process is not counted), disk used (the crawl store so far)
and ``rows + skipped == inputs``; then the crawl's start-up (launch to first
request to the archive), a re-run of the finished archive crawl (requests made,
wall time) and, with two scales, the peak-memory ratio between them. One JSON
line at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.memory import PeakMemory  # noqa: E402
from crawler.mirror import REMOVED_PNG_MD5, Capture, ImgurImage, ImgurSite, LocItem, Mirror  # noqa: E402
from tests.support.testkit import OLD, ROOT, TS, gif_bytes, image_bytes, scrapy_cmd, write_csv  # noqa: E402
from processing.cifar import write_cifar100_tarball  # noqa: E402
from processing.pipeline import summary_path  # noqa: E402

ARCHIVE_ROWS, IMGUR_LINKS, CIFAR_PICTURES = 57_652, 10_158, 50_000
OLDER = "20140101000000"   # between testkit's TS and OLD
# (share, what the archive does): the real file's shape, most rows verify at their own capture
LOC_MIX = [(0.80, "ok"), (0.08, "index"), (0.04, "no_capture"), (0.04, "md5_mismatch"), (0.02, "truncated"),
           (0.02, "not_an_image")]
IMGUR_MIX = [(0.93, "ok"), (0.03, "removed"), (0.02, "video"), (0.01, "animated"), (0.01, "repeat")]


def jpeg(seed: int) -> bytes:
    """A distinct 128x128 JPEG of ~2.5 KB (smooth colours from an 8x8 seed), ~0.4 ms to make."""
    cells = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return image_bytes(Image.fromarray(cells).resize((128, 128), Image.BILINEAR), "JPEG", quality=75)


def kinds(mix, n: int) -> list[str]:
    """``n`` kinds in the mix's proportions, interleaved (row i's kind does not depend on n)."""
    out = []
    for i in range(n):
        x = (i * 0.6180339887) % 1.0          # low-discrepancy: every prefix keeps the mix
        acc = 0.0
        for share, kind in mix:
            acc += share
            if x < acc:
                break
        out.append(kind)
    return out


def archive_corpus(n: int):
    items, rows = [], []
    for i, kind in enumerate(kinds(LOC_MIX, n)):
        meme_id = str(10_000_000 + i)
        body, wrong = jpeg(i), jpeg(10_000_000 + i)
        original = f"http://cdn.meme.am/instances/{meme_id}.jpg"
        captures, fault, index_fault = [Capture(TS, body)], None, None
        if kind == "index":
            captures = [Capture(TS, wrong), Capture(OLDER, body)]
        elif kind == "no_capture":
            captures, fault, index_fault = [Capture(TS, body)], "404", "empty"
        elif kind == "md5_mismatch":
            captures = [Capture(TS, wrong), Capture(OLD, wrong)]
        elif kind in ("truncated", "not_an_image"):
            fault = "truncated" if kind == "truncated" else "html_as_jpg"
        items.append(LocItem(original, captures, fault, index_fault=index_fault))
        rows.append({"Meme ID": meme_id, "Archived URL": f"http://webarchive.loc.gov/all/{TS}/{original}",
                     "Base Meme Name": f"Template {i % 400}", "Meme Page URL": f"http://memegenerator.net/instance/{meme_id}",
                     "MD5 Hash": hashlib.md5(body).hexdigest(), "File Size (In Bytes)": len(body),
                     "Alternate Text": f"caption {i}"})
    return items, rows


def imgur_corpus(n: int):
    animated = gif_bytes(1)
    images, links = {}, []
    for i, kind in enumerate(kinds(IMGUR_MIX, n)):
        image_id = f"b{i:07d}"
        if kind == "repeat" and links:
            links.append(links[i // 2])
            continue
        if kind == "video":
            links.append(f"https://i.imgur.com/{image_id}.gifv")
            continue
        ext = "gif" if kind == "animated" else "jpg"
        body = {"ok": jpeg(50_000_000 + i), "removed": None, "animated": animated}[kind]
        images[image_id] = ImgurImage(image_id, body, "image/gif" if ext == "gif" else "image/jpeg")
        links.append(f"https://i.imgur.com/{image_id}.{ext}")
    return ImgurSite(images=images), links


class Stage:
    """Runs one command as a subprocess; wall time and the peak memory of its whole process tree.

    Memory is the tree's summed PSS (proportional set size: a page shared by a parent and its forked
    workers counts once, split between them); summed RSS, which counts such pages in every process, is
    kept beside it as ``peak_rss``.
    """

    def __init__(self, name: str, cmd: list[str], log: Path, mirror: Mirror | None = None):
        self.name, self.cmd, self.log, self.mirror = name, cmd, log, mirror
        self.peak, self.peak_rss, self.seconds, self.first_request = 0, 0, 0.0, None

    def run(self) -> "Stage":
        t0 = time.perf_counter()
        with open(self.log, "w") as out:
            proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            with PeakMemory(proc.pid, interval=0.05, pss=True) as memory:
                while proc.poll() is None:
                    if self.first_request is None and self.mirror is not None and self.requests() > 0:
                        self.first_request = time.perf_counter() - t0
                    time.sleep(0.05)
            self.peak, self.peak_rss = memory.peak_pss, memory.peak_rss
        self.seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{self.name} failed with exit code {proc.returncode}:\n{tail}")
        return self

    def requests(self) -> int:
        return sum(v for k, v in list(self.mirror.hits.items()) if k != "/robots.txt")


def du(*paths: Path) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


def records(manifests: Path, prefix: str) -> list[dict]:
    out = []
    for p in sorted(manifests.glob(f"{prefix}-*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


def line(name, stage: Stage, rows: int, inputs: int, skipped: int, disk: int) -> dict:
    ok = rows + skipped == inputs
    print(f"{name:14s} {stage.seconds:8.1f} s {rows / stage.seconds:9.1f} rows/s {stage.peak / 2**20:8.0f} MB peak PSS "
          f"{disk / 2**20:8.0f} MB disk   rows {rows:,} + skipped {skipped:,} {'==' if ok else '!='} inputs {inputs:,}")
    return {"seconds": round(stage.seconds, 1), "rows_s": round(rows / stage.seconds, 1),
            "peak_mb": round(stage.peak / 2**20), "peak_rss_mb": round(stage.peak_rss / 2**20), "disk_mb": round(disk / 2**20), "rows": rows,
            "skipped": skipped, "inputs": inputs, "accounted": ok}


def crawl_summary(recs: list[dict], expected_ids: set[str]) -> tuple[int, int, bool]:
    """(ok, failed, every input in exactly one record)."""
    ids = [r["source_id"] for r in recs]
    ok = sum(r["status"] == "ok" for r in recs)
    return ok, len(recs) - ok, len(ids) == len(set(ids)) and set(ids) == expected_ids


def rehearse(scale: float, work: Path, train: bool, train_size: int) -> dict:
    n_loc, n_imgur, n_cifar = (max(10, round(x * scale)) for x in (ARCHIVE_ROWS, IMGUR_LINKS, CIFAR_PICTURES))
    print(f"\n== scale {scale}: {n_loc:,} archive rows, {n_imgur:,} imgur links, {n_cifar:,} CIFAR pictures "
          f"(work dir {work})")
    t0 = time.perf_counter()
    items, rows = archive_corpus(n_loc)
    site, links = imgur_corpus(n_imgur)
    write_csv(work / "memegenerator.csv", rows)
    (work / "imgur_links.txt").write_text(",".join(links))     # the original's one-line shape
    cifar = np.random.default_rng(0).integers(0, 256, (n_cifar, 32, 32, 3), dtype=np.uint8)
    cifar_md5 = write_cifar100_tarball(work / "cifar-100-python.tar.gz", cifar)
    del cifar
    print(f"corpus generated in {time.perf_counter() - t0:.0f} s")
    manifests, files = work / "crawl" / "manifests", work / "crawl" / "files"
    result = {"scale": scale, "archive_rows": n_loc, "imgur_links": n_imgur, "cifar": n_cifar}
    with Mirror(items, site, index="pywb") as mirror:
        fast = dict(FILES_STORE=str(files), MANIFEST_DIR=str(manifests), CONCURRENT_REQUESTS="16",
                    IMGUR_CLIENT_ID="", IMGUR_IMAGES=mirror.base_url + "/i", IMGUR_REMOVED_MD5=REMOVED_PNG_MD5)

        def crawl(spider, arg, log):
            name, value = arg.split("=", 1)
            return Stage(spider, scrapy_cmd(spider, mirror, work, {name: value}, **fast), work / log, mirror).run()

        loc = crawl("loc_archive", f"csv={work / 'memegenerator.csv'}", "loc.log")
        ok, failed, exact = crawl_summary(records(manifests, "loc_archive"), {r["Meme ID"] for r in rows})
        result["loc_archive"] = line("loc_archive", loc, ok, n_loc, failed, du(files, manifests))
        result["loc_archive"].update(every_row_once=exact, requests=loc.requests(),
                                     startup_s=round(loc.first_request or loc.seconds, 2))
        print(f"{'':14s} start-up (launch to first archive request) {loc.first_request:.1f} s; "
              f"{loc.requests() / n_loc:.2f} requests per row; every row in exactly one record: {exact}")
        before = loc.requests()
        again = crawl("loc_archive", f"csv={work / 'memegenerator.csv'}", "loc-rerun.log")
        made = again.requests() - before
        result["loc_rerun"] = {"seconds": round(again.seconds, 1), "requests": made,
                               "peak_mb": round(again.peak / 2**20)}
        print(f"{'loc re-run':14s} {again.seconds:8.1f} s, {made} requests, {again.peak / 2**20:.0f} MB peak")

        hits_before = sum(mirror.hits.values())
        im = crawl("imgur_meme", f"urls={work / 'imgur_links.txt'}", "imgur.log")
        unique = {link.rsplit("/", 1)[1].split(".")[0] for link in links}
        ok, failed, exact = crawl_summary(records(manifests, "imgur_meme"), unique)
        result["imgur_meme"] = line("imgur_meme", im, ok, len(unique), failed, du(files, manifests))
        result["imgur_meme"].update(every_link_once=exact, requests=sum(mirror.hits.values()) - hits_before)
    dataset = work / "dataset.h5"
    build = Stage("build_h5", [sys.executable, "-m", "processing.build_h5", "--manifest", str(manifests),
                               "--cifar", str(work / "cifar-100-python.tar.gz"), "--cifar-md5", cifar_md5,
                               "--cifar-count", str(n_cifar), "--out", str(dataset), "--no-progress"],
                  work / "build.log").run()
    summary = json.loads(summary_path(dataset).read_text())
    result["build_h5"] = line("build_h5", build, summary["rows"], summary["inputs"], summary["skipped_total"],
                              du(dataset))
    result["build_h5"]["skipped_by_reason"] = summary["skipped"]
    if train:
        run = work / "run"
        stage = Stage("training.run", [sys.executable, "-m", "training.run", "--data", str(dataset), "--out", str(run),
                                       "--epochs", "1", "--arch", "original", "--sizes", str(train_size),
                                       "--verbose", "0"],
                      work / "train.log").run()
        train_rows = summary["by_split"]["train"]["meme"] + summary["by_split"]["train"]["non_meme"]
        result["training"] = line("train 1 epoch", stage, train_rows, train_rows, 0, du(run))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--scale", default="1", help="fraction of the full size; several, comma-separated, are "
                                                "compared side by side (e.g. 0.1,1)")
    p.add_argument("--no-train", action="store_true", help="skip the training epoch")
    p.add_argument("--train-size", type=int, default=128,
                   help="input size of the training epoch (default 128; the stream always reads 128x128 rows)")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = p.parse_args()
    scales = [float(s) for s in args.scale.split(",")]
    results = []
    for scale in scales:
        base = args.keep or Path(tempfile.mkdtemp(prefix="full_size-"))
        work = base / f"scale-{scale}"
        work.mkdir(parents=True, exist_ok=False)
        results.append(rehearse(scale, work, train=not args.no_train, train_size=args.train_size))
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    for r in results:
        loc = r["loc_archive"]
        print(f"scale {r['scale']}: start-up {loc['startup_s']} s (target < 5 at full size); re-run "
              f"{r['loc_rerun']['requests']} requests in {r['loc_rerun']['seconds']} s (target 0, < 30 s); "
              f"nothing lost: {all(r[s]['accounted'] for s in ('loc_archive', 'imgur_meme', 'build_h5'))}")
    if len(results) > 1:
        small, large = results[0], results[-1]
        for stage in ("loc_archive", "imgur_meme", "build_h5", "training"):
            if stage in small and stage in large:
                ratio = large[stage]["peak_mb"] / max(small[stage]["peak_mb"], 1)
                print(f"peak memory {stage}: {small[stage]['peak_mb']} MB at {small['scale']}, "
                      f"{large[stage]['peak_mb']} MB at {large['scale']}: x{ratio:.2f} (target <= 1.2)")
    print(json.dumps({"full_size": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
