"""The design's four commands, bare and in order, chain into a trained model (issue 15).

In a fresh working directory holding only ``data/memegenerator.csv``,
``data/imgur_links.txt`` and ``data/tiny/``, the commands run with no
arguments at all. The crawlers reach the local mirror only through the
settings module: a ``scrapy.cfg`` there names ``localsettings``, which takes
``crawler.settings`` and points the sites at the mirror, as a user would for a
private archive.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.mirror import ImgurImage, ImgurSite, Mirror
from tests.support.testkit import ROOT, loc_corpus, meme_jpeg, picture, save, write_csv
from processing import paths

pytestmark = pytest.mark.slow

LOC_ROWS = [(str(1000 + i), None) for i in range(18)] + [("1100", "md5_wrong"), ("1101", "404")]
IMGUR_IDS = [f"bare{i:02d}" for i in range(8)]
TINY = 40

LOCAL_SETTINGS = """\
from crawler.settings import *   # noqa: F401,F403 - the project's settings, then this site's

LOC_ARCHIVE = {archive!r}
IMGUR_IMAGES = {images!r}
IMGUR_CLIENT_ID = ""
REDIRECT_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
AUTOTHROTTLE_ENABLED = False     # a local mirror: no politeness needed
DOWNLOAD_DELAY = 0
CONCURRENT_REQUESTS_PER_DOMAIN = 8
RETRY_AFTER_MAX = 2
TELNETCONSOLE_ENABLED = False
"""


def run(cmd: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "IMGUR_CLIENT_ID": ""}
    env.pop("SCRAPY_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-m", *cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def lay_out(work: Path, mirror: Mirror, csv_rows: list[dict]) -> None:
    """The working directory a user would have: the two lists, own tiny pictures, the site settings."""
    write_csv(work / paths.MEME_GENERATOR_CSV, csv_rows)
    (work / paths.IMGUR_LINKS).write_text("".join(f"https://i.imgur.com/{i}.jpg\n" for i in IMGUR_IDS))
    for i in range(TINY):
        save(picture(32, 32, seed=300 + i, caption=None), work / paths.TINY_DIR / "things" / f"{i}.png")
    (work / "scrapy.cfg").write_text("[settings]\ndefault = localsettings\n")
    (work / "localsettings.py").write_text(LOCAL_SETTINGS.format(archive=mirror.archive_url,
                                                                 images=mirror.base_url + "/i"))


@pytest.mark.timeout(900)
def test_the_four_bare_commands_chain_into_a_trained_model(tmp_path):
    items, csv_rows = loc_corpus(LOC_ROWS)
    imgur = ImgurSite(images={i: ImgurImage(i, meme_jpeg(700 + n)) for n, i in enumerate(IMGUR_IDS)})
    with Mirror(items, imgur) as mirror:
        lay_out(tmp_path, mirror, csv_rows)
        loc = run(["scrapy", "crawl", "loc_archive"], tmp_path, timeout=180)
        assert loc.returncode == 0, loc.stderr[-3000:]
        imgur_crawl = run(["scrapy", "crawl", "imgur_meme"], tmp_path, timeout=180)
        assert imgur_crawl.returncode == 0, imgur_crawl.stderr[-3000:]
        hits = dict(mirror.hits)
    assert hits["/all/20150508184553id_/http://cdn.meme.am/instances/250x250/1000.jpg"] == 1   # the mirror, via settings
    assert all(hits[f"/i/{i}.jpg"] == 1 for i in IMGUR_IDS)

    manifests = sorted((tmp_path / paths.MANIFEST_DIR).glob("*.jsonl"))
    assert {p.name.split("-")[0] for p in manifests} == {"loc_archive", "imgur_meme"}

    build = run(["processing.build_h5"], tmp_path, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    memes = len(LOC_ROWS) - 2 + len(IMGUR_IDS)
    assert f"{memes + TINY} rows ({memes} memes, {TINY} non-memes)" in build.stdout, build.stdout
    assert (tmp_path / paths.DATASET).is_file()

    train = run(["training.run"], tmp_path, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    runs = [p for p in (tmp_path / paths.RUNS).iterdir() if p.is_dir()]
    assert len(runs) == 1 and re.fullmatch(r"\d{8}-\d{6}", runs[0].name)
    model = runs[0] / "model.keras"
    assert model.is_file() and (runs[0] / "preprocess.json").is_file()
    assert f"model: {model.relative_to(tmp_path)}" in train.stdout
    assert f"run folder {runs[0].relative_to(tmp_path)}" in train.stderr
