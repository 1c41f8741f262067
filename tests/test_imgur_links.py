"""The pure parts of the imgur crawler: link lists in all three shapes, the placeholder, gallery answers, args."""

import codecs
import csv
import hashlib

import pytest
from scrapy.exceptions import UsageError
from scrapy.settings import Settings

from crawler.commands.crawl import exit_ok
from crawler.spiderargs import check_arguments
from crawler.imgur_links import (LinkListError, PagingState, api_data, api_error_text, gallery_items, is_auth_error,
                                 is_removed_placeholder, is_video, parse_link, read_link_list, unique_links)
from crawler.mirror import REMOVED_PNG, REMOVED_PNG_MD5
from crawler.settings import IMGUR_REMOVED_MD5
from crawler.spiders.imgur_meme import ImgurMemeSpider
from tests.support.testkit import SHARED, meme_jpeg


@pytest.mark.parametrize("text, image_id, ext", [
    ("https://i.imgur.com/v3kmplx.jpg", "v3kmplx", "jpg"),
    ("http://i.imgur.com/AbC12.PNG", "AbC12", "png"),
    ("  i.imgur.com/xyz98ab.gifv ", "xyz98ab", "gifv"),
    ("https://imgur.com/xyz98ab.mp4", "xyz98ab", "mp4"),
    ("https://imgur.com/a/albumX", None, ""),            # an album page, not an image
    ("https://imgur.com/gallery/abc", None, ""),
    ("https://example.com/abc.jpg", None, ""),           # not imgur
    ("https://i.imgur.com.evil.com/abc.jpg", None, ""),
    ("ftp://i.imgur.com/abc.jpg", None, ""),
    ("notalink", None, ""),
    ("http://[see below", None, ""),                      # urlsplit refuses it: unusable, not a crash
])
def test_parse_link(text, image_id, ext):
    link = parse_link(text, 4)
    assert (link.image_id, link.ext, link.line) == (image_id, ext, 4)
    assert link.source_id == (image_id or f"line 4: {text.strip()}")


def ids(links):
    return [link.image_id for link in links]


def test_one_line_comma_separated(tmp_path):
    (tmp_path / "l.csv").write_text("https://i.imgur.com/aaaaa.jpg,https://i.imgur.com/bbbbb.png,"
                                    "https://i.imgur.com/aaaaa.jpg")
    links = read_link_list(tmp_path / "l.csv")
    assert ids(links) == ["aaaaa", "bbbbb", "aaaaa"] and {link.line for link in links} == {1}
    unique, repeats = unique_links(links)
    assert ids(unique) == ["aaaaa", "bbbbb"] and repeats == 1


def test_one_link_per_line_with_blank_lines_and_a_bad_one(tmp_path):
    (tmp_path / "l.txt").write_text("https://i.imgur.com/aaaaa.jpg\n\n  https://i.imgur.com/bbbbb.gif  \nnope\n")
    links = read_link_list(tmp_path / "l.txt")
    assert [(link.line, link.image_id) for link in links] == [(1, "aaaaa"), (3, "bbbbb"), (4, None)]


def test_a_line_of_words_is_one_bad_row_and_links_side_by_side_are_each_read(tmp_path):
    (tmp_path / "l.txt").write_text("https://i.imgur.com/aaaaa.jpg\nthese are not links [see below]\n"
                                    "https://i.imgur.com/bbbbb.jpg https://i.imgur.com/ccccc.jpg\n")
    links = read_link_list(tmp_path / "l.txt")
    assert [(link.line, link.image_id) for link in links] == [(1, "aaaaa"), (2, None), (3, "bbbbb"), (3, "ccccc")]
    assert links[1].source_id == "line 2: these are not links [see below]"


def test_csv_with_a_link_column(tmp_path):
    (tmp_path / "l.csv").write_text("id,Image URL,title\n1,https://i.imgur.com/aaaaa.jpg,a, b\n2,,empty\n"
                                    "3,https://i.imgur.com/ccccc.png,c\n")
    links = read_link_list(tmp_path / "l.csv")
    assert [(link.line, link.image_id, link.text) for link in links] == [
        (2, "aaaaa", "https://i.imgur.com/aaaaa.jpg"), (3, None, ""), (4, "ccccc", "https://i.imgur.com/ccccc.png")]


def test_utf16_with_bom(tmp_path):
    (tmp_path / "l.txt").write_bytes(codecs.BOM_UTF16_LE + "https://i.imgur.com/aaaaa.jpg\r\n".encode("utf-16-le"))
    assert ids(read_link_list(tmp_path / "l.txt")) == ["aaaaa"]


@pytest.mark.parametrize("content, message", [
    (None, "link list not found"), ("dir", "is a folder, not a regular file"), (b"", "link list is empty"), (b"\n \n", "link list is empty"),
    (b"url\n", "header but no links"), (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file"),
    (b"a\x00b", "binary content"), (b"x" * 100_000, "no imgur image link"),
    (b"\xff\xfe", "link list is empty"), (codecs.BOM_UTF8 + b"\n", "link list is empty"),   # only a byte-order mark
])
def test_unusable_lists_raise_one_short_message(tmp_path, content, message):
    path = tmp_path / "l.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(LinkListError, match=message) as exc:
        read_link_list(path)
    assert len(str(exc.value)) < 300 + len(str(path))


def test_a_cell_over_the_csv_limit_is_a_bad_row_and_the_links_after_it_are_read(tmp_path):
    over = "https://i.imgur.com/" + "a" * csv.field_size_limit() + ".jpg"
    (tmp_path / "l.txt").write_text(f"{over}\nhttps://i.imgur.com/bbbbb.jpg\n")
    (tmp_path / "one.csv").write_text(f"https://i.imgur.com/aaaaa.jpg,{over},https://i.imgur.com/ccccc.jpg\n")
    bad, good = read_link_list(tmp_path / "l.txt")
    assert (good.line, good.image_id) == (2, "bbbbb") and (bad.line, bad.image_id) == (1, None)
    assert "field larger than field limit" in bad.problem and len(bad.text) < 100 and len(bad.source_id) < 200
    assert [link.image_id for link in read_link_list(tmp_path / "one.csv")] == ["aaaaa", None, "ccccc"]
    spider = ImgurMemeSpider()
    spider.settings = Settings({"IMGUR_IMAGES": "http://127.0.0.1:9/i"})
    record = spider.link_request(bad)
    assert record["status"] == "bad_row" and record["detail"] == bad.problem
    # a worker given the job records the same
    assert spider.request_for_job(ImgurMemeSpider.job_for_link(bad)).meta["record"]["detail"] == bad.problem


def test_an_over_long_title_beside_the_link_column_leaves_the_link(tmp_path):
    (tmp_path / "l.csv").write_text("url,title\nhttps://i.imgur.com/aaaaa.jpg," + "t" * (csv.field_size_limit() + 1)
                                    + "\nhttps://i.imgur.com/bbbbb.jpg,b\n")
    assert [(link.line, link.image_id) for link in read_link_list(tmp_path / "l.csv")] == [(2, "aaaaa"), (3, "bbbbb")]


def test_a_nul_after_the_first_line_spoils_only_its_cell(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"https://i.imgur.com/aaaaa.jpg\nhttps://i.imgur.com/bb\x00b.jpg\n"
                                     b"https://i.imgur.com/ccccc.jpg\n")
    assert [link.image_id for link in read_link_list(tmp_path / "l.txt")] == ["aaaaa", None, "ccccc"]


def test_old_mac_line_endings(tmp_path):
    (tmp_path / "l.txt").write_bytes(b"https://i.imgur.com/aaaaa.jpg\rhttps://i.imgur.com/bbbbb.jpg\r")
    assert [(link.line, link.image_id) for link in read_link_list(tmp_path / "l.txt")] == [(1, "aaaaa"), (2, "bbbbb")]


@pytest.mark.realdata
def test_the_original_memeurls_csv():
    links = read_link_list(SHARED / "csv" / "memeurls.csv")
    unique, repeats = unique_links(links)
    assert len(links) == 10_158 and len(unique) == 10_151 and repeats == 7
    # 6 cells are "https://i.imgur.com/.jpg" (no id): one bad_row record for the lot; 10,150 image ids
    assert [link.text for link in unique if not link.image_id] == ["https://i.imgur.com/.jpg"]
    assert {(len(link.image_id), link.ext) for link in unique if link.image_id} == {(7, "jpg")}


def test_removed_placeholder_is_recognised_by_its_bytes():
    assert is_removed_placeholder(REMOVED_PNG, {REMOVED_PNG_MD5})
    assert not is_removed_placeholder(meme_jpeg(1), {REMOVED_PNG_MD5})
    assert not is_removed_placeholder(REMOVED_PNG + b"\0", {REMOVED_PNG_MD5})
    # the documented default is imgur's removed.png digest (also the ETag imgur serves it with)
    assert IMGUR_REMOVED_MD5 == ["d835884373f4d6c8f24742ceabe74946"]
    assert hashlib.md5(REMOVED_PNG).hexdigest() not in IMGUR_REMOVED_MD5


def test_gallery_items_accepts_both_shapes():
    items = [{"id": "a"}]
    assert gallery_items({"items": items, "name": "meme"}) == items
    assert gallery_items(items) == items
    assert gallery_items({"items": []}) == [] and gallery_items([]) == []
    for odd in ("text", 3, None, {"error": "x"}, {"items": "x"}):
        assert gallery_items(odd) is None


def test_only_video_types_and_links_are_videos():
    gif = {"type": "image/gif", "animated": True, "link": "https://i.imgur.com/a.gif",
           "mp4": "https://i.imgur.com/a.mp4"}
    assert not is_video(gif)
    assert is_video({"type": "video/mp4", "link": "https://i.imgur.com/a.mp4"})
    assert is_video({"type": "image/gif", "link": "https://i.imgur.com/a.gifv"})
    assert not is_video({"type": "image/jpeg", "link": "https://i.imgur.com/a.jpg"})


def test_auth_errors():
    assert is_auth_error(401, b"")
    assert is_auth_error(403, b'{"data":{"error":"Invalid client_id"},"status":403}')
    assert not is_auth_error(403, b'{"data":{"error":"Permission denied"},"status":403}')   # a private album
    assert not is_auth_error(404, b"client_id")
    # a gallery page is public: a 403 there refuses the client id, whatever the body says
    assert is_auth_error(403, b"Permission Denied", gallery_page=True)
    assert not is_auth_error(404, b"", gallery_page=True)


def test_api_error_text_quotes_imgur_or_the_body():
    assert api_error_text(b'{"data":{"error":"Invalid client_id","method":"GET"},"status":403}') == "'Invalid client_id'"
    assert api_error_text(b"Permission Denied\n") == "'Permission Denied'"
    assert api_error_text(b"x" * 5000).endswith("(5,000 characters)")


@pytest.mark.parametrize("body, data", [(b'{"data": [1], "success": true}', [1]), (b'{"data": null}', None)])
def test_api_data_reads_an_answer(body, data):
    assert api_data(body) == data


@pytest.mark.parametrize("body", [b'{"data": {"items": [ {"id": "broken"', b"<html>over capacity</html>", b"[1, 2]",
                                  b'{"success": true}', b"\xff\xfe"])
def test_api_data_refuses_a_malformed_answer(body):
    with pytest.raises(ValueError):
        api_data(body)


def test_paging_state_round_trip(tmp_path):
    path = tmp_path / "s.json"
    state = PagingState("t/meme/viral/week", pages_done=[0, 1], albums_pending={"x": {"id": "x"}})
    state.save(path)
    loaded = PagingState.load(path, "t/meme/viral/week")
    assert loaded == state and loaded.start_page() == 2 and loaded.resumed
    assert PagingState.load(path, "t/meme/top/week") == PagingState("t/meme/top/week")   # another gallery
    state.complete = True
    state.save(path)
    assert PagingState.load(path, "t/meme/viral/week").start_page() == 0                 # a finished crawl
    path.write_text("{not json")
    assert not PagingState.load(path, "t/meme/viral/week").resumed


def settings(**kw):
    return Settings({"IMGUR_CLIENT_ID": "x", "IMGUR_URLS": "/nonexistent/imgur_links.txt", **kw})


@pytest.mark.parametrize("args, message", [
    ({"max_item": "5"}, "unknown argument"),
    ({"max_items": "five"}, "whole number"),
    ({"sort": "best"}, "sort"),
    ({"urls": "/nonexistent.txt"}, "not found"),
    ({"x" * 500: "1"}, "unknown argument"),
    ({"include_animated": "maybe"}, "include_animated= takes 1/true/yes/0/false/no, got 'maybe'"),
    ({"include_animated": ""}, "-a include_animated= has no value"),
    ({"max_items": ""}, "-a max_items= has no value: give one, or leave the argument out"),
    ({"urls": " "}, "-a urls= has no value"),
])
def test_validate_arguments(args, message):
    with pytest.raises(UsageError, match=message) as exc:
        check_arguments(ImgurMemeSpider, args)
        ImgurMemeSpider.validate_arguments(settings(), args)
    assert len(str(exc.value)) < 300


def test_an_empty_argument_is_refused_for_every_spider():
    from crawler.spiders.loc_archive import LocArchiveSpider
    with pytest.raises(UsageError, match="-a limit= has no value"):     # not "no limit"
        check_arguments(LocArchiveSpider, {"csv": "x.csv", "limit": ""})


@pytest.mark.parametrize("value, expect", [("1", True), ("TRUE", True), ("yes", True), ("0", False),
                                           ("false", False), (" No ", False)])
def test_include_animated_takes_a_yes_or_no(value, expect):
    ImgurMemeSpider.validate_arguments(settings(), {"include_animated": value})
    assert ImgurMemeSpider(include_animated=value).include_animated is expect
    assert ImgurMemeSpider().include_animated is False


def test_gallery_arguments_do_not_apply_to_a_link_list(tmp_path):
    (tmp_path / "l.txt").write_text("https://i.imgur.com/aaaaa.jpg")
    ImgurMemeSpider.validate_arguments(settings(), {"urls": str(tmp_path / "l.txt"), "max_items": "3"})
    with pytest.raises(UsageError, match="max_pages"):
        ImgurMemeSpider.validate_arguments(settings(), {"urls": str(tmp_path / "l.txt"), "max_pages": "3"})
    # no client id: the default list when present, else one line naming where it goes
    ImgurMemeSpider.validate_arguments(settings(IMGUR_CLIENT_ID="", IMGUR_URLS=str(tmp_path / "l.txt")), {})
    with pytest.raises(UsageError, match="/nonexistent/imgur_links.txt"):
        ImgurMemeSpider.validate_arguments(settings(IMGUR_CLIENT_ID=""), {})


def test_job_for_link_round_trip():
    spider = ImgurMemeSpider()
    spider.settings = Settings({"IMGUR_IMAGES": "http://127.0.0.1:9/i"})
    link = parse_link("https://i.imgur.com/aaaaa.jpg", 7)
    job = ImgurMemeSpider.job_for_link(link)
    assert job == {"link": "https://i.imgur.com/aaaaa.jpg", "line": 7}
    request = spider.request_for_job(job)
    assert request.url == "http://127.0.0.1:9/i/aaaaa.jpg" and request.meta["manifest_key"] == ("imgur", "aaaaa")
    bad = spider.request_for_job({"link": "nope", "line": 3})       # a record still needs a request in a worker
    assert bad.url == "data:," and bad.meta["record"]["status"] == "bad_row"


@pytest.mark.parametrize("reason, ok", [("finished", True), ("shutdown", True), ("closespider_itemcount", True),
                                        (None, True), ("auth_refused", False), ("cancelled", False)])
def test_exit_ok(reason, ok):
    assert exit_ok(reason) is ok


def test_every_stop_reason_has_a_meaning():
    from processing import reasons
    stops = {v for k, v in vars(reasons.Stop).items() if k.isupper()}
    assert stops == set(reasons.STOP_MEANINGS) and all(reasons.STOP_MEANINGS.values())
    assert not (stops - {reasons.QUOTA_EXHAUSTED}) & reasons.ALL     # never a row's status
