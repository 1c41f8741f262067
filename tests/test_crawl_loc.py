"""`scrapy crawl loc_archive` against a local archive that misbehaves like the real one."""

import csv
import hashlib
import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.support.testkit import ROOT, SHARED
from tests.support.testkit import CDN, TS, crawl_stats, loc_corpus, manifest_records, run_crawl, scrapy_cmd, write_csv
from crawler import archive
from crawler.meme_csv import read_meme_csv
from crawler.middlewares import redirect_allowed, retry_after_seconds
from crawler.mirror import Mirror
from processing.manifest import ManifestWriter, Record, expand_paths, iter_records
from processing.reasons import is_final, is_known

FAULT_ROWS = [("1", None), ("2", "calendar"), ("3", "404"), ("4", "flaky503"), ("5", "429"), ("6", "truncated"),
              ("7", "html_as_jpg"), ("8", "challenge"), ("9", "md5_wrong_then_right"), ("10", "md5_wrong"),
              ("11", "no_capture"), ("12", "redirect_private"), ("13", "slow"), ("14", "hang"), ("15", "too_large")]
EXPECTED = {"1": "ok", "2": "ok", "3": "http_404", "4": "ok", "5": "ok", "6": "truncated", "7": "not_an_image",
            "8": "blocked", "9": "ok", "10": "size_mismatch", "11": "no_capture", "12": "redirect_refused",
            "13": "ok", "14": "timeout", "15": "too_large"}


@pytest.fixture(scope="module")
def fault_crawl(tmp_path_factory):
    work = tmp_path_factory.mktemp("loc")
    items, rows = loc_corpus(FAULT_ROWS)
    write_csv(work / "memes.tsv", rows)
    with Mirror(items, slow_seconds=0.5) as mirror:
        r = run_crawl("loc_archive", mirror, work, {"csv": work / "memes.tsv"},
                      DOWNLOAD_TIMEOUT="2", RETRY_TIMES="2", DOWNLOAD_MAXSIZE="500000")
        hits = dict(mirror.hits)
    assert r.returncode == 0, r.stderr[-3000:]
    return work, rows, manifest_records(work), hits, r.stderr


@pytest.mark.slow
def test_every_row_has_one_record_with_the_right_status(fault_crawl):
    _, rows, records, _, _ = fault_crawl
    assert sorted(r["source_id"] for r in records) == sorted(r["Meme ID"] for r in rows)
    assert {r["source_id"]: r["status"] for r in records} == EXPECTED
    # every fault of the mirror's archive ends in a status (and attempt statuses) from the one vocabulary
    assert all(is_known(s) for r in records for s in [r["status"]] + [a["status"] for a in r.get("attempts", [])])


@pytest.mark.slow
def test_stored_files_are_the_original_bytes(fault_crawl):
    work, rows, records, _, _ = fault_crawl
    md5_by_id = {r["Meme ID"]: r["MD5 Hash"] for r in rows}
    for rec in records:
        if rec["status"] != "ok":
            assert "path" not in rec
            continue
        data = (work / "manifests" / rec["path"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5_by_id[rec["source_id"]] == rec["md5"]
        assert hashlib.sha256(data).hexdigest() == rec["sha256"]
        assert rec["path"].endswith(f"{rec['sha256']}.jpg")          # content-addressed, original format
        assert rec["width"] == 250 and rec["template"].startswith("Template") and rec["alt_text"]
        assert "id_/" in rec["capture_url"]
        assert rec["page_url"] == f"http://memegenerator.net/instance/{rec['source_id']}"


@pytest.mark.slow
def test_fewest_requests(fault_crawl):
    _, _, records, hits, _ = fault_crawl
    direct = f"/all/{TS}id_/{CDN.format(1)}"
    assert hits[direct] == 1 and not any(CDN.format(1) in p for p in hits if p != direct)
    # the calendar row: its query page, then only the nearest verifying capture
    assert hits[f"/all/20150601000000id_/{CDN.format(2)}"] == 1
    assert hits.get(f"/all/20120101000000id_/{CDN.format(2)}", 0) == 0
    # wrong MD5 on the nearest capture: the calendar offers an older one that verifies
    assert hits[f"/all/*/{CDN.format(9)}"] == 1 and hits[f"/all/20140101000000id_/{CDN.format(9)}"] == 1
    # 503 twice then success; 429 once with Retry-After then success
    assert hits[f"/all/{TS}id_/{CDN.format(4)}"] == 3 and hits[f"/all/{TS}id_/{CDN.format(5)}"] == 2
    # the private redirect target was never contacted (it is not even served by the mirror)
    assert not any("127.0.0.2" in p for p in hits)


@pytest.mark.slow
def test_resume_skips_done_rows_without_a_request(fault_crawl, tmp_path):
    work, rows, records, _, _ = fault_crawl
    items, _ = loc_corpus(FAULT_ROWS)
    with Mirror(items, slow_seconds=0.5) as mirror:
        r = run_crawl("loc_archive", mirror, work, {"csv": work / "memes.tsv"}, DOWNLOAD_TIMEOUT="2", RETRY_TIMES="0")
        hits = dict(mirror.hits)
    assert r.returncode == 0
    # only the transient failure (timeout) is tried again (its fallback asks, once, which index the archive has)
    probes = {p for p in hits if "url=http://memegenerator.net/" in p}
    assert len(probes) <= 2
    assert {p for p in hits if p != "/robots.txt"} - probes <= {f"/all/{TS}id_/{CDN.format(14)}",
                                                               f"/all/*/{CDN.format(14)}"}
    assert "'resume/skipped': 14" in r.stderr


@pytest.mark.slow
def test_utf8_csv_with_calendar_urls_and_jobdir(tmp_path):
    items, rows = loc_corpus([("21", None), ("22", None), ("23", None)], calendar_form=True)
    write_csv(tmp_path / "memes.csv", rows, utf16_tsv=False)
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.csv", "limit": 2},
                      JOBDIR=str(tmp_path / "job"))
        hits = dict(mirror.hits)
    assert r.returncode == 0, r.stderr[-2000:]
    records = manifest_records(tmp_path)
    assert sorted(x["source_id"] for x in records) == ["21", "22"] and all(x["status"] == "ok" for x in records)
    # a range URL uses the default timestamp; the archive redirects to the nearest capture
    assert hits[f"/all/20160901235959id_/{CDN.format(21)}"] == 1 and hits[f"/all/{TS}id_/{CDN.format(21)}"] == 1
    assert (tmp_path / "job").is_dir()


@pytest.mark.slow
def test_killed_crawl_resumes_with_nothing_lost_or_fetched_twice(tmp_path):
    ids = [str(100 + i) for i in range(60)]
    items, rows = loc_corpus([(i, None) for i in ids])
    write_csv(tmp_path / "memes.tsv", rows)
    with Mirror(items, latency=0.1) as mirror:
        proc = subprocess.Popen(scrapy_cmd("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv"},
                                           CONCURRENT_REQUESTS_PER_DOMAIN="2"),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and len(manifest_records(tmp_path)) < 10:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first = {r["source_id"] for r in manifest_records(tmp_path)}
        assert 10 <= len(first) < 60
        first_hits = dict(mirror.hits)
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv"})
        assert r.returncode == 0
        hits = dict(mirror.hits)
    records = manifest_records(tmp_path)
    assert sorted({x["source_id"] for x in records}) == sorted(ids)
    assert len(records) == 60 and all(x["status"] == "ok" for x in records)
    for meme_id in first:   # rows done before the kill were not requested again
        path = f"/all/{TS}id_/{CDN.format(meme_id)}"
        assert hits[path] == first_hits[path] == 1


def records_written(work) -> int:
    """Manifest lines so far (a line being written is not counted, and nothing is parsed)."""
    return sum(p.read_bytes().count(b"\n") for p in (work / "manifests").glob("*.jsonl"))


def final_records_per_row(work) -> Counter:
    """Final records per Meme ID, read as the builder reads them (a line torn by a kill is not a record)."""
    return Counter(rec.source_id for path in expand_paths([work / "manifests"]) for rec in iter_records(path)
                   if rec is not None and is_final(rec.status))


def kill_when(proc, done, seconds=60) -> None:
    """kill -9 ``proc`` once ``done()`` (or after ``seconds``, or at once if it has ended)."""
    deadline = time.time() + seconds
    while proc.poll() is None and not done() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_at_random_moments_with_jobdir_then_one_rerun_records_every_row_once(tmp_path):
    """A crawl with JOBDIR killed 4 times at random moments (seeded), then run once more: every row ends in
    exactly one final record, and the re-run's accounting (from the manifests) says so."""
    ids = [str(1000 + i) for i in range(300)]
    items, rows = loc_corpus([(i, None) for i in ids], calendar_form=True)   # range rows: redirects, queued
    write_csv(tmp_path / "memes.tsv", rows)
    args, settings = {"csv": tmp_path / "memes.tsv"}, {"JOBDIR": str(tmp_path / "job"), "LOC_INDEX": "calendar"}
    rng = random.Random(27)
    with Mirror(items, latency=0.01) as mirror:
        for _ in range(4):
            target = records_written(tmp_path) + rng.randint(5, 60)
            proc = subprocess.Popen(scrapy_cmd("loc_archive", mirror, tmp_path, args, **settings), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kill_when(proc, lambda: records_written(tmp_path) >= target)
        assert records_written(tmp_path) < len(ids)
        r = run_crawl("loc_archive", mirror, tmp_path, args, **settings)
    assert r.returncode == 0, r.stderr[-3000:]
    finals = final_records_per_row(tmp_path)
    assert {i: finals[i] for i in ids} == {i: 1 for i in ids} and set(finals) == set(ids)
    stats = crawl_stats(r.stderr)
    assert stats["rows/unaccounted"] == stats["rows/doubled"] == 0
    assert stats["rows/recorded_ok"] + stats["resume/skipped"] == len(ids)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_request_queue_a_killed_crawl_left_in_jobdir_is_said_and_rebuilt(tmp_path):
    """Scrapy's own disk queue, killed while it holds requests (as every JOBDIR crawl before this fix left it):
    the next crawl says so in one line, does not replay it, and records every row once."""
    ids = [str(2000 + i) for i in range(200)]
    items, rows = loc_corpus([(i, None) for i in ids], calendar_form=True)
    write_csv(tmp_path / "memes.tsv", rows)
    job = tmp_path / "job"
    args, settings = {"csv": tmp_path / "memes.tsv"}, {"JOBDIR": str(job), "LOC_INDEX": "calendar"}

    def queue_holds_requests():
        try:
            return any(f.stat().st_size for f in job.glob("requests.queue/*/*/q*"))
        except FileNotFoundError:   # Scrapy removes a priority's folder once it empties, maybe while we walk it
            return False

    with Mirror(items, latency=0.01) as mirror:
        proc = subprocess.Popen(scrapy_cmd("loc_archive", mirror, tmp_path, args, **settings,
                                           SCHEDULER="scrapy.core.scheduler.Scheduler"),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when(proc, lambda: records_written(tmp_path) >= 20 and queue_holds_requests())
        assert (job / "requests.queue").is_dir()
        r = run_crawl("loc_archive", mirror, tmp_path, args, **settings)
    assert r.returncode == 0, r.stderr[-3000:]
    said = [line for line in r.stderr.splitlines() if f"JOBDIR {job}: " in line]
    assert len(said) == 1 and "not replayed" in said[0], r.stderr[-3000:]
    finals = final_records_per_row(tmp_path)
    assert {i: finals[i] for i in ids} == {i: 1 for i in ids}
    assert not (job / "requests.queue").exists()          # the queue now stays in memory


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_row_with_two_final_records_is_said_and_exits_non_zero(tmp_path):
    items, rows = loc_corpus([("1", None), ("2", None)])
    write_csv(tmp_path / "memes.tsv", rows)
    with ManifestWriter(tmp_path / "manifests" / "earlier.jsonl") as w:   # what the kill -9 bug left behind
        for status in ("md5_mismatch", "http_404"):
            w.write(Record(source="loc_archive", source_id="1", status=status))
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv"})
    assert r.returncode == 1, r.stderr[-3000:]
    line = next(x for x in r.stderr.splitlines() if "rows read" in x)
    assert "2 rows read, 1 recorded ok" in line and "1 skipped by resume" in line and "1 with TWO FINAL RECORDS" in line


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_repeated_rows_repeated_ids_and_rows_missing_cells(tmp_path):
    """The same row twice is crawled once; a later row under the same Meme ID with other contents is
    duplicate_id; rows missing their MD5 or size are bad_row naming the field; the closing line counts them."""
    items, rows = loc_corpus([("1", None), ("2", None), ("3", None), ("4", None), ("5", None)])
    header = list(rows[0])
    cells = [[str(row[h]) for h in header] for row in rows]
    other = cells[1][:1] + cells[2][1:]                   # Meme ID 2, the contents of row 3
    lines = [header, cells[0], cells[1], cells[0], other, cells[3][:4], cells[4][:5] + [""] + cells[4][6:],
             cells[2]]
    (tmp_path / "memes.csv").write_text("".join(",".join(c) + "\n" for c in lines))
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.csv"})
        hits = dict(mirror.hits)
    assert r.returncode == 0, r.stderr[-3000:]
    records = {rec["source_id"]: rec for rec in manifest_records(tmp_path)}
    assert len(manifest_records(tmp_path)) == len(records) == 6
    assert {k: rec["status"] for k, rec in records.items()} == {
        "1": "ok", "2": "ok", "2@line5": "duplicate_id", "4": "bad_row", "5": "bad_row", "3": "ok"}
    assert "on line 3 too" in records["2@line5"]["detail"]
    assert "no MD5 Hash and no File Size (In Bytes) on line 6" in records["4"]["detail"]
    assert "no File Size (In Bytes) on line 7" in records["5"]["detail"]
    assert hits[f"/all/{TS}id_/{CDN.format(1)}"] == 1 and hits[f"/all/{TS}id_/{CDN.format(3)}"] == 1
    line = next(x for x in r.stderr.splitlines() if "rows read" in x)
    assert "7 rows read, 3 recorded ok, 3 recorded failed (bad_row: 2, duplicate_id: 1)" in line
    assert "1 listed again (recorded once)" in line


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_row_over_the_csv_field_limit_is_a_bad_row_and_the_others_are_crawled(tmp_path):
    items, rows = loc_corpus([("1", None), ("2", None), ("3", None)])
    rows[1]["Alternate Text"] = "x" * (csv.field_size_limit() + 1)
    write_csv(tmp_path / "memes.tsv", rows)                  # UTF-16 TSV, as published
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv"}, timeout=100)
    assert r.returncode == 0, r.stderr[-3000:]
    records = {rec["source_id"]: rec for rec in manifest_records(tmp_path)}
    assert {k: rec["status"] for k, rec in records.items()} == {"1": "ok", "2": "bad_row", "3": "ok"}
    assert "field larger than field limit" in records["2"]["detail"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("settings, args, expect", [
    ({"MANIFEST_DIR": "FILE"}, {}, "MANIFEST_DIR: FILE is a file, not a folder; pass -s MANIFEST_DIR=DIR"),
    ({"MANIFEST_DIR": "/dev/full"}, {}, "/dev/full is a character device, not a folder"),
    ({}, {"ids": "abc,,"}, "-a ids= takes comma-separated Meme IDs"),
    ({"JOBDIR": "FILE"}, {}, "JOBDIR: FILE is a file, not a folder; pass -s JOBDIR=DIR"),
    ({"CONCURRENT_REQUESTS": "abc"}, {}, "-s CONCURRENT_REQUESTS='abc': expected a number"),
    ({"DOWNLOAD_TIMEOUT": "soon"}, {}, "-s DOWNLOAD_TIMEOUT='soon': expected a number"),
    ({"AUTOTHROTTLE_ENABLED": "maybe"}, {}, "-s AUTOTHROTTLE_ENABLED='maybe': expected 0/1 or true/false"),
])
def test_unusable_manifest_dir_or_ids_one_line_exit_2(tmp_path, settings, args, expect):
    (tmp_path / "afile").write_text("x")
    items, rows = loc_corpus([("1", None)])
    write_csv(tmp_path / "memes.tsv", rows)
    settings = {k: v.replace("FILE", str(tmp_path / "afile")) for k, v in settings.items()}
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "memes.tsv", **args}, timeout=100,
                      **settings)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert expect.replace("FILE", str(tmp_path / "afile")) in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("content,expect", [
    (None, "CSV not found"),
    ("a,b\n1,2\n", "missing column(s) 'Meme ID'"),
])
@pytest.mark.slow
def test_bad_csv_one_line_exit_2(tmp_path, content, expect):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    with Mirror([]) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": path})
    assert r.returncode == 2 and expect in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "manifests").exists()


def test_archive_url_grammar():
    assert archive.parse_archived_url(
        "http://webarchive.loc.gov/all/20150508184553/http://cdn.meme.am/instances/1.jpg") == \
        ("20150508184553", None, "http://cdn.meme.am/instances/1.jpg")
    assert archive.parse_archived_url(
        "http://webarchive.loc.gov/all/19960101000000-20160901235959*/http://cdn.meme.am/i/2.jpg") == \
        (None, "19960101000000-20160901235959", "http://cdn.meme.am/i/2.jpg")
    assert archive.parse_archived_url("http://webarchive.loc.gov/all/0/http://cdn.meme.am/i/3.jpg") == \
        (None, None, "http://cdn.meme.am/i/3.jpg")
    assert archive.nearest_first(["20100101000000", "20150601000000", "20150401000000"], "20150508184553") == \
        ["20150601000000", "20150401000000", "20100101000000"]


def test_redirect_and_retry_after_rules():
    assert redirect_allowed("https://webarchive.loc.gov/x", set())
    for url in ("http://127.0.0.1/x", "http://10.1.2.3/x", "http://192.168.0.1/", "http://[::1]/", "http://localhost/",
                "ftp://example.org/x", "http://169.254.169.254/latest"):
        assert not redirect_allowed(url, set())
    assert redirect_allowed("http://127.0.0.1:8000/x", {"127.0.0.1"})
    assert retry_after_seconds(b"7") == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10
    assert retry_after_seconds(b"soon") is None


@pytest.mark.realdata
@pytest.mark.parametrize("name,count", [("memegenerator_utf16_sample.csv", 4666), ("memegenerator_arrange.csv", 12869),
                                        ("memegenerator_arrange_15000.csv", 1770)])
def test_real_csv_files_parse(name, count):
    rows = list(read_meme_csv(SHARED / "csv" / name))
    assert len(rows) == count
    for row in rows:
        ts, rng, original = archive.parse_archived_url(row.archived_url)
        assert original.startswith(("http://", "https://")) and row.meme_id
        assert ts is None or len(ts) == 14
        assert len(row.md5) in (0, 32)   # a few real rows lack the hash: any image then verifies
    assert sum(len(r.md5) == 32 for r in rows) > 0.95 * count


def test_handmade_sample_is_in_the_official_format():
    path = ROOT / "datasets" / "meme_generator_handmade.tsv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xff\xfe") and "\t" in raw.decode("utf-16") and "\r\n" in raw.decode("utf-16")
    rows = list(read_meme_csv(path))
    assert [r.meme_id for r in rows] == ["1000001", "1000002", "1000003"] and rows[0].alt_text
    assert [archive.parse_archived_url(r.archived_url)[:2] for r in rows] == [
        (None, "19960101000000-20160901235959"), ("20150508184553", None), (None, None)]


def test_parallel_writes_into_one_new_folder(tmp_path):
    """Writer threads racing to create the same content-addressed folder must all succeed."""
    from concurrent.futures import ThreadPoolExecutor
    from io import BytesIO

    from scrapy.utils.test import get_crawler

    from crawler.pipelines import MemeFilesPipeline

    pipe = MemeFilesPipeline.from_crawler(get_crawler(settings_dict={"FILES_STORE": str(tmp_path)}))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: pipe.store.persist_file(f"full/ab/{i}.jpg", BytesIO(b"x" * i), None), range(64)))
    assert len(list((tmp_path / "full" / "ab").iterdir())) == 64


def test_media_results_are_remembered_only_up_to_the_cache_size(tmp_path):
    """Scrapy's media pipeline keeps every file result for the whole crawl; ours the last MEDIA_CACHE_SIZE."""
    from scrapy import Spider
    from scrapy.utils.test import get_crawler

    from crawler.pipelines import MemeFilesPipeline

    crawler = get_crawler(Spider, settings_dict={"FILES_STORE": str(tmp_path), "MEDIA_CACHE_SIZE": 3})
    crawler.spider = crawler._create_spider("memes")
    pipe = MemeFilesPipeline.from_crawler(crawler)
    pipe.open_spider()
    for i in range(10):
        pipe.spiderinfo.downloaded[b"fp%d" % i] = {"path": f"{i}.jpg"}
    assert list(pipe.spiderinfo.downloaded) == [b"fp7", b"fp8", b"fp9"]
    assert pipe.spiderinfo.downloaded[b"fp9"] == {"path": "9.jpg"}
