"""`scrapy crawl imgur_meme` against a local API that behaves like imgur's."""

import json
import subprocess
import sys

import h5py
import pytest

from crawler.testkit import ROOT
from crawler.testkit import imgur_site, loc_corpus, manifest_records, run_crawl, write_csv
from crawler.mirror import Mirror
from processing import build_h5


def crawl(mirror, work, args=None, **settings):
    settings.setdefault("IMGUR_CLIENT_ID", "test-client")
    return run_crawl("imgur_meme", mirror, work, args or {}, **settings)


@pytest.fixture(scope="module")
def imgur_crawl(tmp_path_factory):
    work = tmp_path_factory.mktemp("imgur")
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, work)
        hits = dict(mirror.hits)
    assert r.returncode == 0, r.stderr[-3000:]
    return work, {x["source_id"]: x for x in manifest_records(work)}, hits, r.stderr


def test_every_item_seen_is_accounted_for(imgur_crawl):
    _, records, _, log = imgur_crawl
    assert {k: v["status"] for k, v in records.items()} == {
        **{f"img{i}": "ok" for i in range(1, 10)}, "gif1": "animated", "vid1": "animated", "gone": "removed"}
    assert "'imgur/malformed_json': 1" in log


def test_records_carry_metadata_and_original_bytes(imgur_crawl):
    work, records, _, _ = imgur_crawl
    rec = records["img3"]
    assert rec["source"] == "imgur" and rec["label"] == 1 and rec["tags"] == ["meme", "funny"]
    assert rec["title"] == "title img3" and rec["template"] == "albA"
    assert (work / "manifests" / rec["path"]).read_bytes()[:2] == b"\xff\xd8"   # JPEG, not re-encoded
    assert records["img5"]["template"] == "albB"                                 # from the album endpoint


def test_requests_albums_paging_and_backoff(imgur_crawl):
    _, _, hits, log = imgur_crawl
    assert hits["/3/album/albB/images"] == 1
    assert hits["/3/gallery/t/meme/viral/week/3"] == 2          # 429 once, waited, retried
    assert hits["/3/gallery/t/meme/viral/week/5"] == 1          # the empty page ends the crawl
    assert "/3/gallery/t/meme/viral/week/6" not in hits
    assert hits["/i/img1.jpg"] == 1                              # duplicate across pages fetched once
    assert "/i/vid1.mp4" not in hits and "/i/gif1.gif" not in hits
    assert "'retry/retry_after_waits': 1" in log


def test_rerun_fetches_nothing_twice(imgur_crawl):
    work, _, _, _ = imgur_crawl
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, work)
        hits = dict(mirror.hits)
    assert r.returncode == 0
    assert not any(p.startswith("/i/") for p in hits)             # only pages are read again
    assert len(manifest_records(work)) == 12


def test_include_animated_and_limits(tmp_path):
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, tmp_path, {"include_animated": 1, "max_pages": 1})
        hits = dict(mirror.hits)
    assert r.returncode == 0
    records = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert records["gif1"]["status"] == "ok" and records["gif1"]["animated"] is True
    assert records["vid1"]["status"] == "animated"                # videos never
    assert "/3/gallery/t/meme/viral/week/1" not in hits
    with Mirror(imgur=imgur_site()) as mirror:
        crawl(mirror, tmp_path / "b", {"max_items": 3})
    assert len(manifest_records(tmp_path / "b")) == 3


def test_stops_cleanly_before_quota_runs_out(tmp_path):
    with Mirror(imgur=imgur_site(quota=12)) as mirror:      # 2 API calls above the reserve of 10
        r = crawl(mirror, tmp_path, IMGUR_QUOTA_SLOWDOWN="12")
        hits = dict(mirror.hits)
    assert r.returncode == 0
    api_calls = sum(v for k, v in hits.items() if k.startswith("/3/"))
    assert api_calls == 2
    assert "'imgur/stopped_for_quota': True" in r.stderr and "'imgur/quota_slowdowns': 1" in r.stderr
    assert "'imgur/stopped_for_quota': True" in r.stderr and "stopping before imgur's rate limit" in r.stderr
    statuses = [x["status"] for x in manifest_records(tmp_path)]
    assert statuses and all(s in ("ok", "animated", "removed") for s in statuses)


def test_bad_client_id_stops_without_retrying(tmp_path):
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, tmp_path, IMGUR_CLIENT_ID="wrong")
        hits = dict(mirror.hits)
    assert r.returncode == 1   # a crawl stopped at once exits non-zero
    assert hits["/3/gallery/t/meme/viral/week/0"] == 1
    assert "imgur refused the client id (http_401)" in r.stderr
    assert manifest_records(tmp_path) == []


def test_missing_client_id_is_one_line_exit_2(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "IMGUR_CLIENT_ID"}
    r = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "imgur_meme", "-s",
                        f"MANIFEST_DIR={tmp_path / 'm'}"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "IMGUR_CLIENT_ID" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_build_h5_from_both_crawlers(imgur_crawl, tmp_path):
    work, _, _, _ = imgur_crawl
    items, rows = loc_corpus([("1", None), ("2", "404")])
    write_csv(tmp_path / "memes.tsv", rows)
    with Mirror(items) as mirror:
        assert run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv"}).returncode == 0
    out = tmp_path / "ds.h5"
    assert build_h5.main(["--manifest", str(work / "manifests"), "--manifest", str(tmp_path / "manifests"),
                          "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["by_source"]["imgur"] == {"rows": 9, "skipped": 3}
    assert summary["by_source"]["loc_archive"] == {"rows": 1, "skipped": 1}
    assert summary["skipped"] == {"animated": 2, "http_404": 1, "removed": 1}
    with h5py.File(out) as f:
        assert f["images"].shape[0] == 10 and set(f["labels"][:]) == {1}
