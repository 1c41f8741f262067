"""`scrapy crawl loc_archive` under the faults of issues 13 and 15: every row ends in exactly one record
with the reason that describes it, through the calendar and through both CDX index APIs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crawler.mirror import Mirror
from tests.support.testkit import (CDN, OLD, ROOT, TS, crawl_stats, imgur_site, loc_corpus, manifest_records,
                             run_crawl, write_csv)
from processing import reasons

pytestmark = pytest.mark.slow
LIMIT = 120   # seconds per crawl: a hang fails the case, not the suite

ROW_CASES = [("31", "short_then_older"), ("32", "html_then_older"), ("33", "503_then_older"),
             ("34", "redirect_then_listed"), ("35", "bad_ts_month"), ("36", "bad_ts_nines"), ("37", "bad_md5"),
             ("38", "bad_size"), ("39", "long_url"), ("40", "robots"), ("41", None), ("42", "robots"),
             ("43", "robots")]
ROW_EXPECTED = {"31": "size_mismatch", "32": "not_an_image", "33": "http_503", "34": "size_mismatch",
                "35": "bad_row", "36": "bad_row", "37": "bad_row", "38": "bad_row", "39": "url_too_long",
                "40": "robots_forbidden", "41": "ok", "42": "robots_forbidden", "43": "robots_forbidden"}


def requests_for(hits: dict, meme_id: str) -> dict:
    return {p: n for p, n in hits.items() if f"/{meme_id}.jpg" in p}


@pytest.fixture(scope="module")
def row_crawl(tmp_path_factory):
    work = tmp_path_factory.mktemp("rows")
    items, rows = loc_corpus(ROW_CASES)
    write_csv(work / "memes.tsv", rows)
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, work, {"csv": work / "memes.tsv"}, timeout=LIMIT,
                      RETRY_TIMES="1", URLLENGTH_LIMIT="250", LOC_INDEX="calendar")
        hits = dict(mirror.hits)
    return work, r, manifest_records(work), hits


def test_each_row_one_record_with_the_reason_that_describes_it(row_crawl):
    """Rows 40, 42, 43 also prove robots.txt holds for every first request to a host, not only the first waiter."""
    _, r, records, _ = row_crawl
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(x["source_id"] for x in records) == sorted(ROW_EXPECTED)
    assert {x["source_id"]: x["status"] for x in records} == ROW_EXPECTED


def test_failure_names_the_rows_own_capture_and_lists_every_attempt(row_crawl):
    _, _, records, _ = row_crawl
    by_id = {x["source_id"]: x for x in records}
    for meme_id in ("31", "32"):       # the row's own capture, not the older unrelated one, is the verdict
        rec = by_id[meme_id]
        assert rec["capture_url"].endswith(f"/{TS}id_/{CDN.format(meme_id)}")
        assert [a["url"].split("/all/")[1].split("id_")[0] for a in rec["attempts"]
                if "id_" in a["url"]] == [TS, OLD]
        assert all(reasons.is_known(a["status"]) for a in rec["attempts"])
    assert [a["status"] for a in by_id["33"]["attempts"]][0] == "http_503"


def test_transient_failure_stays_transient_and_is_retried(row_crawl, tmp_path):
    work, _, _, _ = row_crawl
    items, _ = loc_corpus(ROW_CASES)
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, work, {"csv": work / "memes.tsv"}, timeout=LIMIT,
                      RETRY_TIMES="0", URLLENGTH_LIMIT="250", LOC_INDEX="calendar")
        hits = dict(mirror.hits)
    assert r.returncode == 0
    asked = {p.split("/all/")[1] for p in hits if "/all/" in p}
    assert asked and all(CDN.format(33) in p for p in asked)     # only the 503 row is tried again
    assert crawl_stats(r.stderr)["resume/skipped"] == len(ROW_CASES) - 1


def test_a_capture_reached_by_redirect_is_not_fetched_again(row_crawl):
    _, _, _, hits = row_crawl
    assert hits[f"/all/20150601000000id_/{CDN.format(34)}"] == 1
    assert hits[f"/all/20100101000000id_/{CDN.format(34)}"] == 1


def test_bad_rows_make_no_request(row_crawl):
    _, _, records, hits = row_crawl
    for meme_id in ("35", "36", "37", "38"):
        assert not requests_for(hits, meme_id)
        detail = next(x["detail"] for x in records if x["source_id"] == meme_id)
        assert "line" in detail and len(detail) < 200
    assert not [p for p in requests_for(hits, "39") if "id_/" in p]   # over URLLENGTH_LIMIT: never sent


def test_closing_line_and_stats_add_up(row_crawl):
    _, r, records, _ = row_crawl
    stats = crawl_stats(r.stderr)
    failed = sum(v for k, v in stats.items() if k.startswith("manifest/") and k != "manifest/ok")
    assert stats["rows/read"] == len(ROW_CASES) == stats.get("manifest/ok", 0) + failed + stats.get("resume/skipped", 0)
    assert stats["rows/unaccounted"] == 0
    line = next(x for x in r.stderr.splitlines() if "rows read" in x)
    assert f"{len(ROW_CASES)} rows read, 1 recorded ok, {len(ROW_CASES) - 1} recorded failed" in line
    assert "bad_row: 4" in line and "0 skipped by resume" in line


# ---- the CDX index --------------------------------------------------------------------------------
RANGE_ROWS = [("51", None), ("52", "idx_paging"), ("53", "idx_empty"), ("54", "idx_malformed"),
              ("55", "idx_429"), ("56", "same_digest"), ("57", "skip_listed"), ("60", "no_capture")]
CONCRETE_ROWS = [("58", "md5_wrong_then_right"), ("59", None)]
INDEX_EXPECTED = {"51": "ok", "52": "ok", "53": "ok", "54": "ok", "55": "ok", "56": "ok", "57": "ok",
                  "58": "ok", "59": "ok", "60": "no_capture"}


def index_corpus():
    items, rows = loc_corpus(RANGE_ROWS, calendar_form=True)
    items2, rows2 = loc_corpus(CONCRETE_ROWS)
    return items + items2, rows + rows2


@pytest.fixture(scope="module", params=["pywb", "wayback"])
def index_crawl(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"index-{request.param}")
    items, rows = index_corpus()
    write_csv(work / "memes.csv", rows, utf16_tsv=False)
    with Mirror(items, index=request.param) as mirror:
        r = run_crawl("loc_archive", mirror, work, {"csv": work / "memes.csv"}, timeout=LIMIT, RETRY_TIMES="2")
        hits = dict(mirror.hits)
    return request.param, r, manifest_records(work), hits


def test_index_resolves_every_row(index_crawl):
    kind, r, records, _ = index_crawl
    assert r.returncode == 0, r.stderr[-3000:]
    assert {x["source_id"]: x["status"] for x in records} == INDEX_EXPECTED
    assert len(records) == len(INDEX_EXPECTED)
    assert crawl_stats(r.stderr)["loc/index"] == kind


def test_index_is_detected_once_per_crawl(index_crawl):
    kind, _, _, hits = index_crawl
    probes = {p: n for p, n in hits.items() if "url=http://memegenerator.net/" in p}
    assert sum(probes.values()) == (1 if kind == "pywb" else 2)     # pywb asked first, then the Wayback form


def test_range_rows_ask_the_index_first_then_one_capture(index_crawl):
    kind, _, _, hits = index_crawl
    rows = requests_for(hits, "51")
    assert sum(rows.values()) == 2 and any("cdx" in p for p in rows) and f"/all/{TS}id_/{CDN.format(51)}" in rows


def test_concrete_rows_fetch_the_capture_first(index_crawl):
    _, _, _, hits = index_crawl
    assert requests_for(hits, "59") == {f"/all/{TS}id_/{CDN.format(59)}": 1}
    rows = requests_for(hits, "58")      # the capture fails MD5; the index offers the older one that verifies
    assert sum(rows.values()) == 3 and hits[f"/all/20140101000000id_/{CDN.format(58)}"] == 1


def test_index_faults(index_crawl):
    kind, r, _, hits = index_crawl
    index_hits = lambda i: sum(n for p, n in requests_for(hits, i).items() if "cdx" in p)  # noqa: E731
    assert index_hits("52") == (2 if kind == "wayback" else 1)     # Wayback pages with its resume key
    assert index_hits("55") == 2                                    # 429 with Retry-After, then the answer
    assert crawl_stats(r.stderr)["loc/index_malformed_lines"] == 1
    # an index that lists nothing: one raw request at the default timestamp, which the archive redirects
    assert sorted(p.split("/all/")[-1].split("/")[0] for p in requests_for(hits, "53") if "id_" in p) == [
        f"{TS}id_", "20160901235959id_"]


def test_index_skips_non_200_unresolvable_revisits_and_repeated_payloads(index_crawl):
    _, _, _, hits = index_crawl
    assert f"/all/20150401000000id_/{CDN.format(56)}" not in hits      # same digest as 20150601, which failed
    assert hits[f"/all/20150601000000id_/{CDN.format(56)}"] == 1
    assert f"/all/20150601000000id_/{CDN.format(57)}" not in hits      # a 404 capture
    assert f"/all/20150401000000id_/{CDN.format(57)}" not in hits      # a revisit of nothing in the index
    assert hits[f"/all/20140101000000id_/{CDN.format(57)}"] == 1


def test_calendar_without_links_is_not_the_end_with_an_index(tmp_path):
    """On a pywb archive the calendar page is a script shell: the index finds the capture the calendar cannot."""
    items, rows = loc_corpus([("61", "md5_wrong_then_right")])
    write_csv(tmp_path / "m.tsv", rows)
    with Mirror(items, index="pywb") as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "m.tsv"}, timeout=LIMIT)
    assert r.returncode == 0 and [x["status"] for x in manifest_records(tmp_path)] == ["ok"]


# ---- bad input files and arguments ------------------------------------------------------------------
HEADER = "Meme ID,Archived URL,Base Meme Name,Meme Page URL,MD5 Hash,File Size (In Bytes),Alternate Text\n"


@pytest.mark.parametrize("name,content,expect", [
    ("empty", b"", "is empty"),
    ("binary", bytes(range(256)) * 20, "not a text file"),
    ("folder", None, "is a folder"),
    ("wide", ("x," * 120_000 + "\n1,2\n").encode(), "missing column(s)"),
])
def test_bad_csv_file_is_one_line_exit_2(tmp_path, name, content, expect):
    path = tmp_path / "in.csv"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with Mirror([]) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": path}, timeout=LIMIT)
    assert r.returncode == 2 and expect in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 600 and "Traceback" not in r.stderr


def test_header_only_csv_warns_zero_rows(tmp_path):
    (tmp_path / "in.csv").write_text(HEADER)
    with Mirror([]) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "in.csv"}, timeout=LIMIT)
    assert r.returncode == 0 and "0 rows read" in r.stderr and "nothing to crawl" in r.stderr


def test_bad_byte_late_in_utf8_csv_is_one_bad_row(tmp_path):
    items, rows = loc_corpus([("71", None), ("72", None), ("73", None)])
    write_csv(tmp_path / "m.csv", rows, utf16_tsv=False)
    raw = (tmp_path / "m.csv").read_bytes().replace(b"alt 72", b"alt \xff\xfe 72")
    (tmp_path / "m.csv").write_bytes(raw)
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "m.csv"}, timeout=LIMIT)
    assert r.returncode == 0
    recs = {x["source_id"]: x for x in manifest_records(tmp_path)}
    assert {k: v["status"] for k, v in recs.items()} == {"71": "ok", "72": "bad_row", "73": "ok"}
    assert "line 3" in recs["72"]["detail"] and crawl_stats(r.stderr)["finish_reason"] == "finished"


def test_unknown_argument_is_rejected(tmp_path):
    items, rows = loc_corpus([("81", None)])
    write_csv(tmp_path / "m.tsv", rows)
    with Mirror(items) as mirror:
        r = run_crawl("loc_archive", mirror, tmp_path, {"csv": tmp_path / "m.tsv", "limt": "5"}, timeout=LIMIT)
    assert r.returncode == 2 and "unknown argument" in r.stderr and "limt" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "manifests").exists()


def test_bare_command_reads_data_memegenerator_csv(tmp_path):
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    items, rows = loc_corpus([("91", None)])
    with Mirror(items) as mirror:
        settings = ["-s", f"LOC_ARCHIVE={mirror.archive_url}", "-s", "REDIRECT_ALLOWED_PRIVATE_HOSTS=127.0.0.1",
                    "-s", "AUTOTHROTTLE_ENABLED=False", "-s", "DOWNLOAD_DELAY=0"]
        cmd = [sys.executable, "-m", "scrapy", "crawl", "loc_archive", *settings]
        missing = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT)
        write_csv(tmp_path / "data" / "memegenerator.csv", rows)
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "data/memegenerator.csv" in missing.stderr and "Library of Congress" in missing.stderr
    assert r.returncode == 0, r.stderr[-2000:]
    assert [x["status"] for x in manifest_records(tmp_path / "data" / "crawl")] == ["ok"]


def test_a_crawl_stopped_at_once_exits_non_zero(tmp_path):
    with Mirror([], imgur_site()) as mirror:
        r = run_crawl("imgur_meme", mirror, tmp_path, timeout=LIMIT, IMGUR_CLIENT_ID="not-the-client-id")
    assert r.returncode != 0 and crawl_stats(r.stderr)["finish_reason"] != "finished"


# ---- one vocabulary -------------------------------------------------------------------------------
def test_every_status_of_every_fault_is_in_the_vocabulary(row_crawl, index_crawl, tmp_path):
    """The row faults, the index faults, and an imgur crawl through its whole fixture site."""
    with Mirror([], imgur_site()) as mirror:
        r = run_crawl("imgur_meme", mirror, tmp_path, timeout=LIMIT, IMGUR_CLIENT_ID="test-client")
    statuses = [x["status"] for x in row_crawl[2] + index_crawl[2] + manifest_records(tmp_path)]
    statuses += [a["status"] for x in row_crawl[2] + index_crawl[2] for a in x.get("attempts", [])]
    assert r.returncode == 0 and statuses
    assert [s for s in statuses if not reasons.is_known(s)] == []
