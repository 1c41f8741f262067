"""In-process checks of the pure parts of loc_archive: CDX parsing (both APIs, the shared real fixtures),
candidate ordering, reason precedence, CSV validation, argument checks, and the one vocabulary of reasons."""

from __future__ import annotations

import ast
import base64
import csv
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from scrapy.exceptions import UsageError
from scrapy.settings import Settings

from crawler import archive
from crawler.archive import CdxCapture, index_candidates, parse_cdx
from crawler.meme_csv import CsvError, csv_records, read_meme_csv, validate_csv
from crawler.pipelines import folder_problem
from crawler.spiderargs import check_arguments, excerpt
from crawler.spiders.loc_archive import LocArchiveSpider, meme_ids, row_outcome, row_problem, verify
from tests.support.testkit import ROOT, SHARED
from processing import reasons

FIXTURES = SHARED / "fixtures"


# ---- CDX: the two JSON APIs -------------------------------------------------------------------------
WAYBACK_JSON = """[["urlkey","timestamp","original","mimetype","statuscode","digest","length"],
["am,meme,cdn)/instances/1.jpg","20150508184553","http://cdn.meme.am/instances/1.jpg","image/jpeg","200","AAA","100"],
["am,meme,cdn)/instances/1.jpg","20150601000000","http://cdn.meme.am/instances/1.jpg","warc/revisit","-","AAA","90"],
[],
["am%2Cmeme%2Ccdn%29%2Finstances%2F1.jpg+20150601000000"]]
"""
PYWB_JSON = (
    '{"urlkey": "am,meme,cdn)/instances/1.jpg", "timestamp": "20150508184553", "url": "http://cdn.meme.am/instances/1.jpg",'
    ' "mime": "image/jpeg", "status": "200", "digest": "AAA", "length": "100", "offset": "0", "filename": "a.warc.gz"}\n'
    '{"urlkey": "am,meme,cdn)/instances/1.jpg", "timestamp": "20150601000000", "url": "http://cdn.meme.am/instances/1.jpg",'
    ' "mime": "warc/revisit", "digest": "AAA", "length": "90", "offset": "9", "filename": "a.warc.gz"}\n')


def test_wayback_json_with_header_and_resume_key():
    page = parse_cdx(WAYBACK_JSON)
    assert [(c.timestamp, c.status, c.revisit, c.digest) for c in page.captures] == [
        ("20150508184553", "200", False, "AAA"), ("20150601000000", None, True, "AAA")]
    assert page.resume_key == "am%2Cmeme%2Ccdn%29%2Finstances%2F1.jpg+20150601000000" and page.malformed == 0


def test_pywb_json_lines():
    page = parse_cdx(PYWB_JSON)
    assert [(c.timestamp, c.status, c.revisit) for c in page.captures] == [
        ("20150508184553", "200", False), ("20150601000000", None, True)]
    assert page.resume_key is None


@pytest.mark.parametrize("text", [
    WAYBACK_JSON.replace('"20150601000000","http', '"2015060', 1),
    PYWB_JSON.replace('"timestamp": "20150601000000"', '"timestamp": "2015', 1),
    WAYBACK_JSON.replace('"20150601000000","http', '"20151399000000","http', 1),
])
def test_a_malformed_line_is_counted_and_skipped(text):
    page = parse_cdx(text)
    assert [c.timestamp for c in page.captures] == ["20150508184553"] and page.malformed == 1


def test_query_urls_of_both_apis():
    pywb = archive.cdx_query_url("pywb", "https://webarchive.loc.gov/all", "http://a.b/1.jpg",
                                 "19960101000000-20160901235959")
    assert pywb == ("https://webarchive.loc.gov/all/cdx?url=http%3A%2F%2Fa.b%2F1.jpg&output=json"
                    "&from=19960101000000&to=20160901235959")
    wb = archive.cdx_query_url("wayback", "https://web.archive.org/web", "http://a.b/1.jpg", limit=50, resume_key="k+1")
    assert wb == ("https://web.archive.org/cdx/search/cdx?url=http%3A%2F%2Fa.b%2F1.jpg&output=json"
                  "&showResumeKey=true&limit=50&resumeKey=k%2B1")


# ---- CDX: the shared real fixtures (pywb's index files, recorded Wayback answers) -------------------
def _data_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip() and not x.startswith((" CDX", "CDX", "#"))]


@pytest.mark.realdata
def test_every_pywb_index_file_parses():
    files = sorted(p for p in (FIXTURES / "pywb-cdx").rglob("*") if p.is_file() and p.suffix != ".gz")
    assert len(files) >= 15
    for path in files:
        text = path.read_text()
        page = parse_cdx(text)
        assert page.malformed == 0 and len(page.captures) == len(_data_lines(text)), path.name
        for c in page.captures:
            assert archive.valid_timestamp(c.timestamp) and c.original.startswith("http")
    example = parse_cdx((FIXTURES / "pywb-cdx/cdxj/example.cdxj").read_text()).captures
    assert [(c.status, c.revisit) for c in example] == [(None, False), (None, True), (None, False)]


@pytest.mark.realdata
def test_recorded_wayback_answers_parse_with_their_paging():
    bodies = FIXTURES / "wayback-recordings" / "decoded_bodies"
    pages = [parse_cdx((bodies / f"test_search_multipage__{i:02d}.cdx.txt").read_text()) for i in range(15)]
    assert all(p.resume_key for p in pages[:14]) and pages[14].resume_key is None
    assert sum(len(p.captures) for p in pages) == sum(len(_data_lines(
        (bodies / f"test_search_multipage__{i:02d}.cdx.txt").read_text())) for i in range(15)) - 14
    revisits = parse_cdx((bodies / "test_search_does_not_repeat_results__00.cdx.txt").read_text()).captures
    assert any(c.revisit and c.status is None for c in revisits) and any(c.status == "301" for c in revisits)
    blocked = parse_cdx((bodies / "test_search_raises_for_blocked_urls__00.cdx.txt").read_text())
    assert blocked.captures == [] and blocked.malformed == 1


@pytest.mark.realdata
def test_candidates_from_pywb_dupes_index():
    caps = parse_cdx((FIXTURES / "pywb-cdx/cdxj/dupes.cdxj").read_text()).captures
    example = [c for c in caps if c.original == "http://example.com"]
    # one 200 capture and a revisit of the same payload: one fetch, the nearer of the two
    assert index_candidates(example, "20140127171300") == ["20140127171251"]
    iana = [c for c in caps if c.original == "http://iana.org"]
    assert index_candidates(iana, "20140127171238") == []        # a 302 is not the image


# ---- candidate ordering against a plain reference ---------------------------------------------------
def _reference(captures, target, skip_ts=(), skip_digests=()):
    from datetime import datetime

    def dist(ts):
        return abs((datetime.strptime(ts, "%Y%m%d%H%M%S") - datetime.strptime(target, "%Y%m%d%H%M%S")).total_seconds())
    ok_digests = {c.digest for c in captures if c.status == "200"}
    out, seen = [], set(skip_digests)
    for c in sorted(captures, key=lambda c: (dist(c.timestamp), c.timestamp)):
        usable = (c.status == "200" and not c.revisit) or (c.revisit and c.digest in ok_digests)
        if usable and c.timestamp not in skip_ts and c.digest not in seen and c.timestamp not in out:
            seen.add(c.digest)
            out.append(c.timestamp)
    return out


def test_index_candidates_match_the_reference():
    import random
    rng = random.Random(7)
    for _ in range(200):
        caps = [CdxCapture(f"20{rng.randint(10, 16)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}000000", "http://a",
                           rng.choice(["image/jpeg", "warc/revisit"]), rng.choice(["200", "200", "404", None]),
                           rng.choice("ABCD")) for _ in range(rng.randint(0, 8))]
        caps = [CdxCapture(c.timestamp, c.original, c.mime, None if c.revisit else (c.status or "200"), c.digest)
                for c in caps]
        target = "20150508184553"
        skip_ts, skip_d = {caps[0].timestamp} if caps else set(), {"D"}
        assert index_candidates(caps, target, skip_ts, skip_d) == _reference(caps, target, skip_ts, skip_d)


def test_payload_digest_is_the_cdx_digest():
    body = b"GIF89a..."
    assert archive.payload_digest(body) == base64.b32encode(hashlib.sha1(body).digest()).decode()


def test_timestamps_that_are_not_dates():
    assert archive.valid_timestamp("20150508184553") and archive.valid_timestamp("2015")
    for ts in ("20151399000000", "99999999999999", "2015-05", "", "201505081845531"):
        assert not archive.valid_timestamp(ts)


# ---- verdicts and precedence ------------------------------------------------------------------------
def _row(**kw):
    from crawler.meme_csv import MemeRow
    base = dict(meme_id="1", archived_url="http://w/all/20150508184553/http://c/1.jpg", base_meme_name="B",
                md5=hashlib.md5(b"right").hexdigest(), size=5)
    return MemeRow(**{**base, **kw})


def test_size_is_checked_before_md5():
    row = _row()
    assert verify(b"right", row, html=False) == reasons.OK
    assert verify(b"rig", row, html=False) == reasons.SIZE_MISMATCH
    assert verify(b"wrong", row, html=False) == reasons.MD5_MISMATCH
    assert verify(b"right", row, html=True) == reasons.NOT_AN_IMAGE


@pytest.mark.parametrize("statuses,expect", [
    (["md5_mismatch", "size_mismatch", "not_an_image"], ("not_an_image", 2)),
    (["size_mismatch", "md5_mismatch"], ("size_mismatch", 0)),
    (["http_404", "md5_mismatch"], ("md5_mismatch", 1)),
    (["http_503", "md5_mismatch"], ("http_503", 0)),        # transient anywhere: the row is transient
    (["md5_mismatch", "timeout"], ("timeout", 1)),
    (["md5_mismatch", "md5_mismatch"], ("md5_mismatch", 0)),  # a tie: the row's own capture
    ([], ("no_capture", None)),
])
def test_row_outcome_precedence(statuses, expect):
    attempts = [{"url": f"u{i}", "status": s} for i, s in enumerate(statuses)]
    status, url = row_outcome(attempts)
    assert (status, None if url is None else int(url[1:])) == expect


def test_listed_nothing_and_404_is_no_capture():
    assert row_outcome([{"url": "u0", "status": "http_404"}], listed_none=True) == ("no_capture", None)
    assert row_outcome([{"url": "u0", "status": "http_404"}], listed_none=False) == ("http_404", "u0")


# ---- CSV files and rows -----------------------------------------------------------------------------
HEADER = "Meme ID,Archived URL,Base Meme Name,MD5 Hash,File Size (In Bytes)\n"


@pytest.mark.parametrize("content,expect", [
    (None, "CSV not found"), (b"", "is empty"), (b"\x00\x01\x02binary\xff" * 50, "not a text file"),
    (b"\xff\xfe\xfe" + b"x" * 10, "not a text file"), (("x," * 50_000 + "\n").encode(), "missing column(s)"),
    (b"\xff\xfe", "is empty"), (b"\xef\xbb\xbf", "is empty"), (b"\xfe\xff\n", "is empty"),   # only a byte-order mark
    (b"Meme ID\x00," + HEADER[8:].encode() + b"1,x,y,z,1\n", "not a text file"),      # a NUL in the header line
])
def test_bad_csv_files(tmp_path, content, expect):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CsvError) as err:
        list(read_meme_csv(path))
    assert expect in str(err.value) and len(str(err.value)) < 600


def test_only_a_byte_order_mark_is_empty_when_validated(tmp_path):
    (tmp_path / "bom.csv").write_bytes(b"\xff\xfe")
    with pytest.raises(CsvError, match="is empty"):
        validate_csv(tmp_path / "bom.csv")


ROW = "{},http://w/all/20150508184553/http://c/{}.jpg,B," + "a" * 32 + ",12"


def test_a_field_over_the_csv_limit_is_a_bad_row_and_the_rows_after_it_are_read(tmp_path):
    over = csv.field_size_limit() + 1
    (tmp_path / "m.csv").write_text(HEADER.replace("\n", ",Alternate Text\n") + ROW.format(1, 1) + ",a\n"
                                    + ROW.format(2, 2) + "," + "x" * over + "\n" + ROW.format(3, 3) + ",c\n")
    rows = list(read_meme_csv(tmp_path / "m.csv"))
    assert [(r.meme_id, r.line) for r in rows] == [("1", 2), ("2", 3), ("3", 4)]
    assert rows[0].problem == rows[2].problem == "" and rows[2].alt_text == "c"
    assert "line 3" in rows[1].problem and "field larger than field limit" in rows[1].problem
    assert f"({over:,} characters)" in rows[1].alt_text and len(rows[1].alt_text) < 100   # the record stays small
    record = LocArchiveSpider().first_request(rows[1])                # a record at once, no request
    assert record["status"] == reasons.BAD_ROW and record["source_id"] == "2" and "field limit" in record["detail"]


def test_csv_records_match_the_csv_module_and_go_on_after_an_unreadable_record():
    lines = ["a,b\n", '"c\n', 'd",e\n', "f," + "g" * (csv.field_size_limit() + 1) + ",h\n", "i,j\n"]
    assert [(n, v) for n, v, _ in csv_records(lines[:3])] == list(zip((1, 3), csv.reader(lines[:3])))
    out = list(csv_records(lines))
    assert [(n, v[0], bool(e)) for n, v, e in out] == [(1, "a", False), (3, "c\nd", False), (4, "f", True),
                                                       (5, "i", False)]
    assert out[2][1][2] == "h"                        # an unreadable record: its line split at the delimiter


def test_a_nul_in_a_later_row_is_that_rows_bad_row(tmp_path):
    (tmp_path / "m.csv").write_text(HEADER + ROW.format(1, 1) + "\n" + ROW.format("2\x00", 2) + "\n"
                                    + ROW.format(3, 3) + "\n")
    rows = list(read_meme_csv(tmp_path / "m.csv"))
    assert [r.problem for r in rows] == ["", "a NUL byte on line 3 (binary data in the file?)", ""]
    assert row_problem(rows[1]) == rows[1].problem


@pytest.mark.parametrize("ids", ["abc,,", "abc", ",", "", "1,x2", "1;2"])
def test_ids_that_are_not_meme_ids_are_refused(ids):
    with pytest.raises(UsageError, match=r"-a ids= takes comma-separated Meme IDs.*got") as err:
        LocArchiveSpider.validate_arguments(Settings({"LOC_INDEX": "auto", "REDIS_URL": "redis://x"}), {"ids": ids})
    assert "\n" not in str(err.value)


def test_meme_ids_ignore_spaces_and_empty_items():
    assert meme_ids(" 10509464, 12285257,,") == {"10509464", "12285257"}
    assert LocArchiveSpider(ids="1,2").ids == {"1", "2"} and LocArchiveSpider().ids is None


def test_manifest_dir_must_be_able_to_be_a_folder(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert folder_problem(tmp_path / "afile") == f"{tmp_path / 'afile'} is a file, not a folder"
    assert folder_problem(tmp_path / "afile" / "sub") == f"{tmp_path / 'afile'} is a file, not a folder"
    assert folder_problem("/dev/full") == "/dev/full is a character device, not a folder"
    assert folder_problem(tmp_path) is None and folder_problem(tmp_path / "new" / "deeper") is None


def test_a_folder_is_not_reported_as_missing(tmp_path):
    with pytest.raises(CsvError, match="is a folder"):
        list(read_meme_csv(tmp_path))


@pytest.mark.timeout(20)
def test_special_files_are_refused_without_being_read(tmp_path):
    os.mkfifo(tmp_path / "rows.csv")                 # opening it would block until a writer came
    for path in (tmp_path / "rows.csv", Path("/dev/zero")):
        with pytest.raises(CsvError, match="not a regular file"):
            list(read_meme_csv(path))
    odd = tmp_path / os.fsdecode(b"caf\xe9")
    odd.mkdir()
    with pytest.raises(CsvError, match=r"caf\\xe9 is a folder"):   # the name escaped, printable
        list(read_meme_csv(odd))


def test_row_checks_before_any_request(tmp_path):
    good_md5 = "a" * 32
    lines = [f"1,http://w/all/20150508184553/http://c/1.jpg,B,{good_md5},12",
             f"2,http://w/all/20150508184553/http://c/2.jpg,B,zz{good_md5[2:]}x,12",
             f"3,http://w/all/20150508184553/http://c/3.jpg,B,{good_md5},12kb",
             f"4,http://w/all/20151399000000/http://c/4.jpg,B,{good_md5},12",
             f"5,http://w/all/99999999999999/http://c/5.jpg,B,{good_md5},12",
             f",http://w/all/20150508184553/http://c/6.jpg,B,{good_md5},12",
             f"7,not a url,B,{good_md5},12",
             f"8,http://w/all/19960101000000-20161399000000*/http://c/8.jpg,B,{good_md5},12"]
    path = tmp_path / "m.csv"
    path.write_bytes((HEADER + "\n".join(lines) + "\n").encode() + b"9,http://w/all/2015/http://c/9.jpg,B\xff,,\n")
    problems = {r.line: row_problem(r) for r in read_meme_csv(path)}
    assert problems[2] == ""
    assert "MD5" in problems[3] and "File Size" in problems[4] and "not a date" in problems[5]
    assert "not a date" in problems[6] and "no Meme ID" in problems[7] and "no archived URL" in problems[8]
    assert "not a date" in problems[9] and problems[10] == "undecodable bytes on line 10"


# ---- arguments and messages -------------------------------------------------------------------------
def test_unknown_arguments_are_rejected_and_known_pass():
    check_arguments(LocArchiveSpider, {"csv": "x", "limit": "3", "ids": "1"})
    with pytest.raises(UsageError, match="unknown argument.*max_item.*takes -a csv="):
        check_arguments(LocArchiveSpider, {"max_item": "5"})


def test_excerpt_is_short():
    assert excerpt("abc") == "'abc'"
    long = excerpt("x" * 355_000)
    assert len(long) < 100 and "355,000 characters" in long


# ---- one vocabulary -----------------------------------------------------------------------------------
def test_no_reason_is_written_as_a_literal_in_the_crawler():
    names = reasons.ALL - {reasons.OK}
    found = []
    stand_ins = {"mirror.py", "testkit.py"}     # fault names of the fixture sites, not statuses
    for path in sorted(p for p in (ROOT / "crawler").rglob("*.py") if p.name not in stand_ins):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        # field names ({"animated": ...}, item["animated"], .get("animated")) are not statuses
        docstrings |= {id(k) for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if k is not None}
        docstrings |= {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
        docstrings |= {id(a) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                       and n.func.attr == "get" for a in n.args[:1]}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in names or node.value.startswith("http_") and node.value[5:].isdigit():
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_faults_module_does_not_parse_exception_text():
    source = (ROOT / "crawler" / "faults.py").read_text()
    assert "str(exc)" not in source and ".startswith(" not in source.split("def reason_for_failure")[1]


def test_readme_reason_table_is_generated_from_meanings():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- reasons:begin -->", "<!-- reasons:end -->"
    assert readme.split(start)[1].split(end)[0].strip() == reasons.markdown_table()


def test_every_meaning_is_one_line():
    for name, meaning in reasons.MEANINGS.items():
        assert meaning and "\n" not in meaning and (name == "http_NNN" or reasons.is_known(name))


def test_attempts_survive_the_manifest(tmp_path):
    from processing.manifest import ManifestWriter, Record, read_manifests
    rec = Record("loc_archive", "1", "md5_mismatch", attempts=[{"url": "u", "status": "md5_mismatch"}])
    with ManifestWriter(tmp_path / "m.jsonl") as w:
        w.write(rec)
    back = read_manifests([tmp_path]).records[("loc_archive", "1")]
    assert back.attempts == [{"url": "u", "status": "md5_mismatch"}]
    assert json.loads((tmp_path / "m.jsonl").read_text())["attempts"][0]["url"] == "u"


def test_dropped_requests_reach_their_errback():
    """Scrapy's own drops (URL length here) call the request's errback with the reason as data."""
    from scrapy import Request
    from scrapy.utils.test import get_crawler

    from crawler.drops import UrlLengthDropMiddleware
    from crawler.faults import Dropped

    seen = []

    def errback(failure):
        seen.append((failure.value.reason, failure.request.url))
        return {"status": failure.value.reason}

    mw = UrlLengthDropMiddleware.from_crawler(get_crawler(settings_dict={"URLLENGTH_LIMIT": 30}))
    short, long = Request("http://a/1", errback=errback), Request("http://a/" + "x" * 40, errback=errback)
    out = list(mw.process_spider_output(None, [short, long]))
    assert out == [short, {"status": reasons.URL_TOO_LONG}] and seen == [(reasons.URL_TOO_LONG, long.url)]
    assert isinstance(Dropped(reasons.OFFSITE), Exception) and Dropped(reasons.OFFSITE).reason == reasons.OFFSITE


def test_shared_fixture_folder_is_where_the_tests_look():
    assert isinstance(FIXTURES, Path)


# ---- an exception on any path through the spider ends in the row's record ------------------------------
def _spider(index_kind=None):
    from scrapy.utils.test import get_crawler
    crawler = get_crawler(LocArchiveSpider, settings_dict={"LOC_ARCHIVE": "http://a.example/all",
                                                          "LOC_DEFAULT_TIMESTAMP": "20160901235959"})
    crawler.stats.open_spider()
    spider = LocArchiveSpider.from_crawler(crawler)
    spider.archive, spider.default_ts, spider.index_kind = "http://a.example/all", "20160901235959", index_kind
    return spider


def _boom(*args, **kwargs):
    raise RuntimeError("injected")


@pytest.mark.parametrize("path,patch", [
    ("first_request", "crawler.spiders.loc_archive.row_problem"),
    ("parse_capture", "crawler.spiders.loc_archive.verify"),
    ("parse_index", "crawler.archive.parse_cdx"),
    ("parse_calendar", "crawler.archive.calendar_captures"),
    ("on_error", "crawler.spiders.loc_archive.reason_for_failure"),
    ("index_known", "crawler.spiders.loc_archive.LocArchiveSpider.range_first"),
])
def test_an_exception_on_every_path_ends_in_a_record(monkeypatch, path, patch):
    from scrapy import Request
    from scrapy.http import HtmlResponse, Response, TextResponse
    from twisted.python.failure import Failure

    spider = _spider(index_kind="pywb")
    row = _row(archived_url="http://w/all/19960101000000-20160901235959*/http://c/1.jpg")
    state = {"row": row, "attempts": [], "queue": [], "fetched": set(), "digests": set(), "index_asked": True,
             "calendar_asked": False, "captures": [], "pages": 0, "listed": None}
    request = Request("http://a.example/all/20150508184553id_/http://c/1.jpg", meta={"state": state})
    monkeypatch.setattr(patch, _boom)
    if path == "first_request":
        out = spider.first_request(row)
    elif path == "parse_capture":
        out = spider.parse_capture(Response(request.url, body=b"right", request=request))
    elif path == "parse_index":
        out = spider.parse_index(TextResponse(request.url, body=b"", request=request))
    elif path == "parse_calendar":
        out = spider.parse_calendar(HtmlResponse(request.url, body=b"<html></html>", request=request))
    elif path == "on_error":
        failure = Failure(RuntimeError("download"))
        failure.request = request
        out = spider.on_error(failure)
    else:
        spider.index_kind = "unknown"
        assert spider.with_index(state, spider.range_first).meta["probe"] == "pywb"
        [out] = spider.index_known("pywb")
    assert out["status"] == reasons.BAD_ROW and out["source_id"] == "1"
    assert "RuntimeError" in out["detail"] or "injected" in out["detail"]


def test_offsite_and_duplicate_drops_reach_the_errback():
    from scrapy import Request, Spider
    from scrapy.utils.test import get_crawler

    from crawler.drops import DroppedRequests, OffsiteDropMiddleware
    from crawler.faults import Dropped

    class Site(Spider):
        name = "site"
        allowed_domains = ["a.example"]

    crawler = get_crawler(Site)
    crawler.spider = Site.from_crawler(crawler)
    mw = OffsiteDropMiddleware.from_crawler(crawler)
    mw.spider_opened(crawler.spider)
    mw.process_request(Request("http://a.example/x"))
    with pytest.raises(Dropped) as err:
        mw.process_request(Request("http://b.example/x"))
    assert err.value.reason == reasons.OFFSITE

    crawled, items = [], []

    class Engine:
        def crawl(self, request):
            crawled.append(request)

        class scraper:  # noqa: N801 - stands in for engine.scraper (a plain call: no reactor here)
            @staticmethod
            def start_itemproc_async(item, response):
                items.append(item)

    crawler.engine = Engine()
    ext = DroppedRequests.from_crawler(crawler)
    follow = Request("http://a.example/next")
    ext.request_dropped(Request("http://a.example/1", errback=lambda f: {"status": f.value.reason}), crawler.spider)
    ext.request_dropped(Request("http://a.example/2", errback=lambda f: follow), crawler.spider)
    assert items == [{"status": reasons.FILTERED_DUPLICATE}] and crawled == [follow]


def test_the_row_record_keeps_its_page_url(tmp_path):
    """The CSV's Meme Page URL reaches the manifest (an empty one is left out)."""
    from processing.manifest import ManifestWriter, Record, read_manifests
    md5 = "a" * 32
    (tmp_path / "m.csv").write_text("Meme ID,Archived URL,Base Meme Name,Meme Page URL,MD5 Hash,File Size (In Bytes)\n"
                                    f"1,http://w/all/20150508184553/http://c/1.jpg,B,http://memegenerator.net/i/1,{md5},12\n")
    row = next(read_meme_csv(tmp_path / "m.csv"))
    spider = LocArchiveSpider()
    with_page = spider.finish({"row": row, "attempts": []}, reasons.NO_CAPTURE)
    without = spider.finish({"row": dataclasses.replace(row, page_url=""), "attempts": []}, reasons.NO_CAPTURE)
    assert with_page["page_url"] == row.page_url and row.page_url.startswith("http") and without["page_url"] is None
    with ManifestWriter(tmp_path / "out" / "m.jsonl") as w:
        w.write(Record.from_dict(with_page))
    assert read_manifests([tmp_path / "out"]).records[("loc_archive", "1")].page_url == row.page_url


def test_the_bare_crawl_without_the_csv_says_where_to_get_it_and_put_it(tmp_path, monkeypatch):
    from scrapy.settings import Settings

    from crawler import settings as crawler_settings
    from processing import paths
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        LocArchiveSpider.validate_arguments(Settings(vars(crawler_settings)), {})
    message = str(err.value)
    assert crawler_settings.LOC_CSV == str(paths.MEME_GENERATOR_CSV)
    assert f"not found: {paths.MEME_GENERATOR_CSV}" in message and "put it there" in message
    assert "loc.gov" in message and "\n" not in message


def test_lazy_start_waits_for_an_empty_scheduler_only_when_the_engine_backs_out():
    import asyncio
    from types import SimpleNamespace

    from scrapy import signals

    from crawler.lazystart import LazyStartMiddleware
    events, backout = [], [True, False]

    async def wait_for(signal):
        events.append(signal)

    crawler = SimpleNamespace(engine=SimpleNamespace(needs_backout=lambda: backout.pop(0)),
                              signals=SimpleNamespace(wait_for=wait_for),
                              stats=SimpleNamespace(inc_value=events.append))

    async def start():
        for i in range(2):
            yield i

    async def taken():
        return [x async for x in LazyStartMiddleware.from_crawler(crawler).process_start(start())]

    assert asyncio.run(taken()) == [0, 1]
    assert events == ["start/waits", signals.scheduler_empty] and backout == []


# ---- rows missing their MD5 or size, repeated rows and IDs -------------------------------------------
def test_a_row_missing_its_md5_or_size_is_a_bad_row_naming_the_field(tmp_path):
    good_md5 = "a" * 32
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "1,http://w/all/20150508184553/http://c/1.jpg,B\n"            # 3 of 5 cells
                    f"2,http://w/all/20150508184553/http://c/2.jpg,B,{good_md5},\n"          # no size
                    "3,http://w/all/20150508184553/http://c/3.jpg,B,,12\n"                   # no MD5
                    f"4,http://w/all/20150508184553/http://c/4.jpg,B,{good_md5},12\n")
    problems = {r.meme_id: row_problem(r) for r in read_meme_csv(path)}
    assert "no MD5 Hash and no File Size (In Bytes) on line 2" in problems["1"]
    assert "no File Size (In Bytes) on line 3" in problems["2"] and "MD5" not in problems["2"]
    assert "no MD5 Hash on line 4" in problems["3"] and problems["4"] == ""


def test_repeated_rows_and_ids_are_marked_with_the_first_rows_line(tmp_path):
    from crawler.meme_csv import with_repeats
    from crawler.spiders.loc_archive import record_id

    one = "1,http://w/all/20150508184553/http://c/1.jpg,B," + "a" * 32 + ",12"
    path = tmp_path / "m.csv"
    path.write_text(HEADER + f"{one}\n2,http://w/all/20150508184553/http://c/2.jpg,B,{'b' * 32},12\n{one}\n"
                    f"1,http://w/all/20150508184553/http://c/other.jpg,B,{'c' * 32},99\n")
    rows = list(with_repeats(lambda: read_meme_csv(path)))
    assert [(r.meme_id, r.line, r.repeat_of, r.duplicate_of) for r in rows] == [
        ("1", 2, 0, 0), ("2", 3, 0, 0), ("1", 4, 2, 0), ("1", 5, 0, 2)]
    assert [record_id(r) for r in rows] == ["1", "2", "1", "1@line5"]   # each row that gets a record, its own key


def test_the_feeder_pushes_one_job_per_row_that_gets_a_record(tmp_path):
    """A row listed again is no job (its record is the first line's); a repeated ID with other contents is a job
    under its own record id, so its key does not collide with the first row's in Redis."""
    import argparse

    from crawler.distributed import job_key
    from crawler.feed import loc_jobs
    from processing.digestset import DigestSet
    from scrapy.settings import Settings

    one = "1,http://w/all/20150508184553/http://c/1.jpg,B," + "a" * 32 + ",12"
    path = tmp_path / "m.csv"
    path.write_text(HEADER + f"{one}\n{one}\n1,http://w/all/20150508184553/http://c/o.jpg,B,{'c' * 32},99\n")
    args = argparse.Namespace(csv=str(path), limit=None, ids=None)
    jobs, skipped = loc_jobs(args, Settings(), DigestSet())
    assert skipped == 0 and [key for key, _, _ in jobs] == [job_key("loc_archive", "1"),
                                                            job_key("loc_archive", "1@line4")]


# ---- JOBDIR after a kill -9 -------------------------------------------------------------------------
def test_what_a_killed_crawl_left_in_jobdir_is_put_right(tmp_path):
    from crawler.jobstate import repair_job_dir

    job = tmp_path / "job"
    (job / "requests.queue" / "127.0.0.1-x" / "-2s").mkdir(parents=True)
    (job / "requests.queue" / "127.0.0.1-x" / "-2s" / "q00000").write_bytes(b"\x00\x00")   # a torn record
    whole = (20).to_bytes(2, "big") + b"f" * 20
    (job / "requests.seen").write_bytes(whole * 2 + (20).to_bytes(2, "big") + b"torn")
    (job / "spider.state").write_bytes(b"\x80\x04\x95")                                      # a pickle cut short
    said = repair_job_dir(job)
    assert len(said) == 3 and all(line.startswith(f"JOBDIR {job}: ") and "\n" not in line for line in said)
    assert "not replayed" in said[0] and not (job / "requests.queue").exists()
    assert (job / "requests.seen").read_bytes() == whole * 2 and not (job / "spider.state").exists()
    assert repair_job_dir(job) == []                                                           # now whole: nothing to say


# ---- the closing accounting, from the manifests -----------------------------------------------------
def test_the_closing_accounting_comes_from_the_manifests(tmp_path):
    from processing.manifest import ManifestWriter, Record
    from crawler.rowguard import RowsRead, manifest_summary

    def rec(source_id, status, at, source="loc_archive"):
        return Record(source=source, source_id=source_id, status=status, time=at,
                      path="x.jpg" if status == reasons.OK else None)

    with ManifestWriter(tmp_path / "a.jsonl") as w:
        for r in [rec("done", "ok", 10), rec("again", "timeout", 10), rec("again", "ok", 30),
                  rec("lost", "timeout", 10), rec("twice", "md5_mismatch", 25), rec("twice", "ok", 26),
                  rec("failed", "timeout", 21), rec("failed", "http_404", 22), rec("lost", "ok", 30, "imgur_meme")]:
            w.write(r)
    rows = RowsRead()
    for key in ["done", "again", "lost", "twice", "failed", "twice"]:
        rows.add(("loc_archive", key))
    s = manifest_summary(tmp_path, "loc_archive", rows, since=20)
    assert s == {"read": 6, "ok": 2, "failed": 1, "failed_by_reason": {"http_404": 1}, "skipped": 1,
                 "repeated": 1, "unaccounted": 1, "doubled": 1}
