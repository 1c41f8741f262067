"""`scrapy crawl imgur_meme` against a local API that behaves like imgur's, and a list of direct image links."""

import json
import os
import subprocess
import sys

import h5py
import pytest

from tests.support.testkit import ROOT
from tests.support.testkit import gif_bytes, imgur_site, loc_corpus, manifest_records, meme_jpeg, run_crawl, write_csv
from crawler.mirror import REMOVED_PNG, REMOVED_PNG_MD5, ImgurImage, Mirror
from processing import build_h5

pytestmark = pytest.mark.slow   # every test here runs real subprocesses
NO_CLIENT_ENV = {k: v for k, v in os.environ.items() if k != "IMGUR_CLIENT_ID"}


def crawl(mirror, work, args=None, timeout=120, **settings):
    settings.setdefault("IMGUR_CLIENT_ID", "test-client")
    settings.setdefault("IMGUR_REMOVED_MD5", REMOVED_PNG_MD5)   # the mirror's stand-in for imgur's removed.png
    return run_crawl("imgur_meme", mirror, work, args or {}, timeout=timeout, **settings)


def api_hits(hits: dict) -> dict:
    return {k: v for k, v in hits.items() if k.startswith("/3/")}


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
        **{f"img{i}": "ok" for i in range(1, 11)}, "gif1": "animated", "vid1": "animated", "gone": "removed"}
    assert "'retry/reason_count/malformed_answer': 1" in log        # page 2, malformed once: retried, then read


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
    assert hits["/3/gallery/t/meme/viral/week/2"] == 2          # malformed once, retried
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
    assert len(manifest_records(work)) == 13


def test_include_animated_keeps_gifs_not_videos_and_limits(tmp_path):
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, tmp_path, {"include_animated": 1, "max_pages": 1})
        hits = dict(mirror.hits)
    assert r.returncode == 0
    records = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert records["gif1"]["status"] == "ok" and records["gif1"]["animated"] is True   # it has an mp4 field too
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
    assert "stopping before imgur's rate limit" in r.stderr and "'imgur/stop_reason': 'quota_exhausted'" in r.stderr
    statuses = [x["status"] for x in manifest_records(tmp_path)]
    assert statuses and all(s in ("ok", "animated", "removed") for s in statuses)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("refusal, says", [("invalid_client_id", "'Invalid client_id'"),
                                           ("permission_denied", "'Permission Denied'")])
def test_bad_client_id_stops_at_once_with_exit_1(tmp_path, refusal, says):
    with Mirror(imgur=imgur_site(refusal=refusal)) as mirror:     # a 403 with imgur's client-id error, or a bare one
        r = crawl(mirror, tmp_path, IMGUR_CLIENT_ID="wrong")
        hits = dict(mirror.hits)
    assert r.returncode == 1
    assert api_hits(hits) == {"/3/gallery/t/meme/viral/week/0": 1}
    line = next(x for x in r.stderr.splitlines() if "imgur refused the client id" in x)
    assert "ERROR" in line and f"(http_403: {says})" in line and "export IMGUR_CLIENT_ID=" in line
    assert "'imgur/stop_reason': 'auth_refused'" in r.stderr
    assert manifest_records(tmp_path) == []


@pytest.mark.timeout(60)
def test_no_input_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "imgur_meme", "-s", f"MANIFEST_DIR={tmp_path / 'm'}",
                        "-s", f"IMGUR_URLS={tmp_path / 'imgur_links.txt'}"], cwd=ROOT, capture_output=True, text=True,
                       env=NO_CLIENT_ENV, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "IMGUR_CLIENT_ID" in r.stderr and str(tmp_path / "imgur_links.txt") in r.stderr
    assert "memeurls.csv" in r.stderr and "-a urls=FILE" in r.stderr
    assert not (tmp_path / "m").exists()


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
    assert summary["by_source"]["imgur"] == {"rows": 10, "skipped": 3}
    assert summary["by_source"]["loc_archive"] == {"rows": 1, "skipped": 1}
    assert summary["skipped"] == {"animated": 2, "http_404": 1, "removed": 1}
    with h5py.File(out) as f:
        assert f["images"].shape[0] == 11 and set(f["labels"][:]) == {1}


# ---- issue 13: the gallery under imgur's real behaviour -------------------------------------------------------

@pytest.mark.timeout(120)
def test_placeholder_served_directly_is_removed(tmp_path):
    site = imgur_site()
    site.images["ph"] = ImgurImage("ph", REMOVED_PNG, "image/png")      # 200 with removed.png's bytes, no redirect
    site.pages[0].append({"id": "ph", "type": "image/png", "animated": False, "link": "{base}/i/ph.png"})
    with Mirror(imgur=site) as mirror:
        r = crawl(mirror, tmp_path, {"max_pages": 1})
        hits = dict(mirror.hits)
    assert r.returncode == 0
    records = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert hits["/i/ph.png"] == 1 and "/removed.png" not in hits
    assert records["ph"]["status"] == "removed" and "path" not in records["ph"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("status", [403, 404])
def test_one_album_refusal_is_one_failure_and_the_crawl_goes_on(tmp_path, status):
    with Mirror(imgur=imgur_site(album_errors={"albB": status})) as mirror:
        r = crawl(mirror, tmp_path)
        hits = dict(mirror.hits)
    assert r.returncode == 0
    records = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert records["albB"]["status"] == f"http_{status}" and records["albB"]["template"] == "albB"
    assert {records[f"img{i}"]["status"] for i in (1, 2, 3, 4, 7, 8, 9)} == {"ok"}    # later pages still crawled
    assert hits["/3/album/albB/images"] == 1 and hits["/3/gallery/t/meme/viral/week/5"] == 1
    assert "'imgur/stop_reason': 'gallery_end'" in r.stderr


@pytest.mark.timeout(90)
def test_gallery_repeating_itself_stops_with_a_reason(tmp_path):
    site = imgur_site()
    site.pages = site.pages[:-1]          # no empty page: past page 4 the gallery answers page 4 again, forever
    site.endless = True
    with Mirror(imgur=site) as mirror:
        r = crawl(mirror, tmp_path, timeout=60)
        hits = dict(mirror.hits)
    assert r.returncode == 0
    pages = sorted(int(k.rsplit("/", 1)[1]) for k in api_hits(hits) if "/gallery/" in k)
    assert pages == [0, 1, 2, 3, 4, 5, 6]               # IMGUR_STALE_PAGES=2 pages with nothing new, then stop
    assert "'imgur/stop_reason': 'no_new_items'" in r.stderr and "brought nothing new" in r.stderr
    assert len(manifest_records(tmp_path)) == 13


@pytest.mark.timeout(120)
def test_list_shaped_data_is_read_and_an_unknown_shape_is_one_logged_page(tmp_path):
    with Mirror(imgur=imgur_site(list_pages={1}, odd_pages={3})) as mirror:
        r = crawl(mirror, tmp_path)
        hits = dict(mirror.hits)
    assert r.returncode == 0
    statuses = {x["source_id"]: x["status"] for x in manifest_records(tmp_path)}
    assert statuses["gone"] == "removed" and statuses["img5"] == statuses["img6"] == "ok"   # page 1, a bare list
    assert "img7" not in statuses and statuses["img8"] == statuses["img9"] == "ok"       # page 3 skipped, not the end
    assert "'imgur/unknown_shape': 1" in r.stderr and "page 3: unknown shape of data (str)" in r.stderr
    assert hits["/3/gallery/t/meme/viral/week/5"] == 1


@pytest.mark.timeout(120)
def test_a_page_malformed_for_good_is_retried_then_stops_the_paging_and_a_rerun_starts_from_it(tmp_path):
    with Mirror(imgur=imgur_site(malformed_pages={2})) as mirror:
        first = crawl(mirror, tmp_path, RETRY_TIMES="2")
        before = api_hits(dict(mirror.hits))
    assert first.returncode == 0
    assert before["/3/gallery/t/meme/viral/week/2"] == 3 and "/3/gallery/t/meme/viral/week/3" not in before
    assert "'retry/reason_count/malformed_answer': 2" in first.stderr
    line = next(x for x in first.stderr.splitlines() if "gallery page 2 failed" in x)
    assert "ERROR" in line and "(malformed_answer)" in line and "a re-run starts from it" in line
    assert "'imgur/stop_reason': 'page_failed'" in first.stderr
    state = json.loads((tmp_path / "manifests" / "imgur_meme-t-meme-viral-week.state.json").read_text())
    assert state["complete"] is False and state["pages_done"] == [0, 1]
    with Mirror(imgur=imgur_site()) as mirror:
        second = crawl(mirror, tmp_path)
        after = api_hits(dict(mirror.hits))
    assert second.returncode == 0 and "resuming gallery t/meme/viral/week after page 1" in second.stderr
    assert min(after) == "/3/gallery/t/meme/viral/week/2"
    statuses = {x["source_id"]: x["status"] for x in manifest_records(tmp_path)}
    assert statuses["img10"] == "ok" and len(statuses) == 13          # page 2's image, and all after it


@pytest.mark.timeout(120)
def test_an_album_answer_malformed_for_good_is_one_transient_record(tmp_path):
    with Mirror(imgur=imgur_site(malformed_albums={"albB"})) as mirror:
        r = crawl(mirror, tmp_path, RETRY_TIMES="1")
        hits = dict(mirror.hits)
    assert r.returncode == 0 and hits["/3/album/albB/images"] == 2
    records = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert records["albB"]["status"] == "malformed_answer" and records["img7"]["status"] == "ok"   # the crawl goes on
    state = json.loads((tmp_path / "manifests" / "imgur_meme-t-meme-viral-week.state.json").read_text())
    assert "albB" not in state["albums_done"]                            # a re-run asks for it again


@pytest.mark.timeout(180)
def test_rerun_after_a_quota_stop_continues_where_it_stopped(tmp_path):
    with Mirror(imgur=imgur_site(quota=15)) as mirror:   # pages 0-2 (2 asked twice) and album B: above the reserve
        first = crawl(mirror, tmp_path, IMGUR_QUOTA_SLOWDOWN="0")
        before = api_hits(dict(mirror.hits))
    assert first.returncode == 0 and "'imgur/stop_reason': 'quota_exhausted'" in first.stderr
    state = json.loads((tmp_path / "manifests" / "imgur_meme-t-meme-viral-week.state.json").read_text())
    assert state["complete"] is False and state["pages_done"] == [0, 1, 2]
    with Mirror(imgur=imgur_site()) as mirror:
        second = crawl(mirror, tmp_path, IMGUR_QUOTA_SLOWDOWN="0")
        after = api_hits(dict(mirror.hits))
    assert second.returncode == 0 and "resuming gallery t/meme/viral/week after page 2" in second.stderr
    assert not set(before) & set(after)                       # no page or album asked twice
    assert sorted(after) == [f"/3/gallery/t/meme/viral/week/{p}" for p in (3, 4, 5)]
    statuses = {x["source_id"]: x["status"] for x in manifest_records(tmp_path)}
    assert len(statuses) == 13 and statuses["img7"] == statuses["img9"] == "ok"
    state = json.loads((tmp_path / "manifests" / "imgur_meme-t-meme-viral-week.state.json").read_text())
    assert state["complete"] is True                          # the next run pages the gallery afresh


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, quoted", [({"max_item": "5"}, "max_item"), ({"tag": "meme", "urls": "x.txt"}, "tag"),
                                          ({"max_items": ""}, "-a max_items= has no value")])
def test_unknown_or_misplaced_argument_is_one_line_exit_2(tmp_path, args, quoted):
    with Mirror(imgur=imgur_site()) as mirror:
        r = crawl(mirror, tmp_path, args, timeout=60)
        hits = dict(mirror.hits)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert quoted in r.stderr and not hits and not (tmp_path / "manifests").exists()


# ---- issue 15: the imgur link list ---------------------------------------------------------------------------

def link_site():
    """Direct image links as i.imgur.com answers them, one of each behaviour."""
    site = imgur_site()
    site.images.update({
        "still": ImgurImage("still", meme_jpeg(901)),
        "gone2": ImgurImage("gone2", None),                        # a second redirect to the same removed.png
        "ph": ImgurImage("ph", REMOVED_PNG, "image/png"),          # the placeholder with 200
        "anim": ImgurImage("anim", gif_bytes(3), "image/gif"),
        "stillgif": ImgurImage("stillgif", meme_jpeg(902), "image/gif"),
        "nf": ImgurImage("nf", None, fault="404"),
        "slow": ImgurImage("slow", meme_jpeg(903), fault="429"),   # 429 once with Retry-After
        "flaky": ImgurImage("flaky", meme_jpeg(904), fault="flaky503"),
        "down": ImgurImage("down", meme_jpeg(905), fault="503"),
    })
    return site


LINKS = ["https://i.imgur.com/still.jpg", "https://i.imgur.com/gone.jpg", "https://i.imgur.com/gone2.jpg",
         "https://i.imgur.com/ph.png",
         "https://i.imgur.com/anim.gif", "https://i.imgur.com/stillgif.gif", "https://i.imgur.com/clip.gifv",
         "https://i.imgur.com/movie.mp4", "https://i.imgur.com/nf.jpg", "https://i.imgur.com/slow.jpg",
         "https://i.imgur.com/flaky.jpg", "https://i.imgur.com/down.jpg", "https://imgur.com/a/albumX",
         "https://i.imgur.com/still.jpg"]                              # a repeat: recorded once
EXPECTED = {"still": "ok", "gone": "removed", "gone2": "removed", "ph": "removed", "anim": "animated", "stillgif": "ok",
            "clip": "animated", "movie": "animated", "nf": "http_404", "slow": "ok", "flaky": "ok",
            "down": "http_503", "line 1: https://imgur.com/a/albumX": "bad_row"}


def crawl_list(mirror, work, args, timeout=120, **settings):
    settings = {"IMGUR_CLIENT_ID": "", "IMGUR_IMAGES": mirror.base_url + "/i", "RETRY_TIMES": "2", **settings}
    return run_crawl("imgur_meme", mirror, work, args, env=NO_CLIENT_ENV, timeout=timeout,
                     IMGUR_REMOVED_MD5=REMOVED_PNG_MD5, **settings)


@pytest.fixture(scope="module")
def list_crawl(tmp_path_factory):
    work = tmp_path_factory.mktemp("links")
    (work / "memeurls.csv").write_text(",".join(LINKS))                 # the original's one-line shape
    with Mirror(imgur=link_site()) as mirror:
        r = crawl_list(mirror, work, {"urls": work / "memeurls.csv"})
        hits = dict(mirror.hits)
    return work, r, hits


@pytest.mark.timeout(150)
def test_link_list_gives_each_listed_link_one_record(list_crawl):
    work, r, hits = list_crawl
    assert r.returncode == 0, r.stderr[-3000:]
    records = manifest_records(work)
    assert {x["source_id"]: x["status"] for x in records} == EXPECTED and len(records) == len(EXPECTED)
    still = next(x for x in records if x["source_id"] == "still")
    assert still["source"] == "imgur" and still["url"] == "https://i.imgur.com/still.jpg"
    assert (work / "manifests" / still["path"]).read_bytes() == meme_jpeg(901)
    assert "'imgur/links_listed': 14" in r.stderr and "'imgur/links_repeated': 1" in r.stderr


@pytest.mark.timeout(150)
def test_link_list_requests_per_link(list_crawl):
    _, r, hits = list_crawl
    assert not api_hits(hits)                                           # no client id, no API
    assert hits["/i/still.jpg"] == 1 and hits["/i/gone.jpg"] == 1 and hits["/removed.png"] == 2
    assert "/i/clip.gifv" not in hits and "/i/movie.mp4" not in hits   # videos: no request
    assert hits["/i/slow.jpg"] == 2 and hits["/i/flaky.jpg"] == 3 and hits["/i/down.jpg"] == 3   # RETRY_TIMES=2
    assert "'retry/retry_after_waits': 1" in r.stderr


@pytest.mark.timeout(150)
def test_link_list_rerun_requests_only_transient_failures(list_crawl):
    work, _, _ = list_crawl
    with Mirror(imgur=link_site()) as mirror:
        r = crawl_list(mirror, work, {"urls": work / "memeurls.csv"})
        hits = dict(mirror.hits)
    assert r.returncode == 0
    assert {k for k in hits if k.startswith("/i/")} == {"/i/down.jpg"}  # http_503 is tried again, nothing else
    assert f"'resume/skipped': {len(EXPECTED) - 1}" in r.stderr


@pytest.mark.timeout(120)
def test_link_list_include_animated_keeps_gifs_not_videos(tmp_path):
    (tmp_path / "links.txt").write_text("\n".join(LINKS[4:8]) + "\n")     # one link per line
    with Mirror(imgur=link_site()) as mirror:
        r = crawl_list(mirror, tmp_path, {"urls": tmp_path / "links.txt", "include_animated": "1"})
    assert r.returncode == 0
    statuses = {x["source_id"]: x["status"] for x in manifest_records(tmp_path)}
    assert statuses == {"anim": "ok", "stillgif": "ok", "clip": "animated", "movie": "animated"}


@pytest.mark.timeout(120)
def test_bare_command_without_client_id_crawls_the_default_list(tmp_path):
    (tmp_path / "imgur_links.csv").write_text("id,url\n1,https://i.imgur.com/still.jpg\n2,\n")   # a CSV column
    with Mirror(imgur=link_site()) as mirror:
        r = crawl_list(mirror, tmp_path, {}, IMGUR_URLS=tmp_path / "imgur_links.csv")
    assert r.returncode == 0
    statuses = {x["source_id"]: x["status"] for x in manifest_records(tmp_path)}
    assert statuses == {"still": "ok", "line 3: ": "bad_row"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("content, message", [(b"", "link list is empty"),
                                              (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "not a text file"),
                                              (b"hello,world\n" * 20000, "no imgur image link")])
def test_bad_link_list_is_one_short_line_exit_2(tmp_path, content, message):
    (tmp_path / "links.txt").write_bytes(content)
    with Mirror(imgur=link_site()) as mirror:
        r = crawl_list(mirror, tmp_path, {"urls": tmp_path / "links.txt"}, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and len(r.stderr) < 400
