"""scrapy crawl imgur_meme [-a urls=FILE] [-a tag=meme] [-a sort=viral] [-a window=week] [-a max_items=N]
                          [-a max_pages=N] [-a include_animated=1]

Two ways in:

* ``-a urls=FILE``: a list of direct ``i.imgur.com`` image links (the original project's one-line
  comma-separated file, one link per line, or a CSV with a link column), fetched with no client id.
  Without arguments and without a client id the list at ``IMGUR_URLS`` is used when it exists.
* the tag gallery through imgur's API v3 (client id from ``IMGUR_CLIENT_ID``). Albums contribute
  their images (inline, or from the album endpoint); paging state is kept beside the manifests so a
  re-run after a quota stop continues where it stopped.

Animated GIFs are recorded as ``animated`` unless ``-a include_animated=1``; videos (``video/*``,
.gifv, .mp4) always are. imgur's removed placeholder is recorded as ``removed``.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path

import scrapy
from scrapy.exceptions import CloseSpider, UsageError
from scrapy.spidermiddlewares.httperror import HttpError

from processing import reasons

from ..distributed import RedisJobsMixin
from ..faults import reason_for_failure
from ..spiderargs import excerpt, flag
from ..imgur_links import (SOURCE, LinkListError, ListedLink, PagingState, api_data, api_error_text, gallery_items,
                           is_auth_error, is_video, parse_link, read_link_list, unique_links)

SORTS = ("viral", "top", "time", "rising")
WINDOWS = ("day", "week", "month", "year", "all")
GALLERY_ARGS = ("tag", "sort", "window", "max_pages")

CLIENT_ID_HELP = "register an application at api.imgur.com/oauth2/addclient, then export IMGUR_CLIENT_ID=<id>"


def client_id(settings) -> str:
    return settings.get("IMGUR_CLIENT_ID") or os.environ.get("IMGUR_CLIENT_ID", "")


def link_list_path(settings, urls: str | None) -> str | None:
    """The link list to crawl: ``-a urls``, else (no client id) ``IMGUR_URLS`` when present; None: the gallery."""
    if urls:
        return urls
    if client_id(settings):
        return None
    default = settings.get("IMGUR_URLS")
    if default and Path(default).is_file():
        return default
    raise UsageError(f"no input: put the imgur link list at {default} (the original project's memeurls.csv, "
                     f"one line of comma-separated https://i.imgur.com/<id>.jpg links) or pass -a urls=FILE; "
                     f"or, to page imgur's tag gallery, {CLIENT_ID_HELP}")


class ImgurMemeSpider(RedisJobsMixin, scrapy.Spider):
    name = "imgur_meme"
    source = SOURCE   # the manifest records' source
    ARGUMENTS = (*GALLERY_ARGS, "urls", "max_items", "include_animated")   # checked by crawler/spiderargs.py

    def __init__(self, tag="meme", sort="viral", window="week", max_items=None, max_pages=None,
                 include_animated="0", urls=None, **kwargs):
        super().__init__(**kwargs)
        self.tag, self.sort, self.window, self.urls = tag, sort, window, urls
        self.max_items = int(max_items) if max_items else None
        self.max_pages = int(max_pages) if max_pages else None
        self.include_animated = flag("include_animated", include_animated)
        self.seen: set[str] = set()
        self.emitted = 0
        self.claims = 0         # first sightings of an image or album in this crawl
        self.stale_pages = 0    # gallery pages in a row that brought nothing new
        self.stop_reason: str | None = None
        self.state: PagingState | None = None

    @classmethod
    def validate_arguments(cls, settings, args: dict) -> None:
        for name in ("max_items", "max_pages"):
            if args.get(name) and not str(args[name]).isdigit():
                raise UsageError(f"-a {name}= takes a whole number, got {excerpt(str(args[name]))}")
        if "include_animated" in args:
            flag("include_animated", args["include_animated"])
        if settings.get("REDIS_URL"):
            return  # a worker: its jobs come from the feeder
        path = link_list_path(settings, args.get("urls"))
        if path is None:
            if args.get("sort", "viral") not in SORTS:
                raise UsageError(f"-a sort= takes one of {', '.join(SORTS)}")
            if args.get("window", "week") not in WINDOWS:
                raise UsageError(f"-a window= takes one of {', '.join(WINDOWS)}")
            return
        if given := [a for a in GALLERY_ARGS if a in args]:
            raise UsageError(f"-a {', '.join(given)} page the gallery; they do not apply to a link list")
        try:
            read_link_list(path)
        except LinkListError as exc:
            raise UsageError(str(exc)) from None

    async def start(self):
        if self.distributed:
            for request in self.distributed_start():
                yield request
            return
        path = link_list_path(self.settings, self.urls)
        if path is not None:
            for obj in self.listed(path):
                yield obj
            return
        self.state = PagingState.load(self.state_path(), self.gallery)
        if self.state.resumed:
            self.logger.info("resuming gallery %s after page %s with %d album(s) pending", self.gallery,
                             max(self.state.pages_done, default="-"), len(self.state.albums_pending))
        for album in list(self.state.albums_pending.values()):
            self.claim_id(f"album:{album['id']}")
            yield self.album_request(album)
        if self.max_pages is None or self.state.start_page() < self.max_pages:
            yield self.page_request(self.state.start_page())

    # ---- the link list -----------------------------------------------------
    def listed(self, path: str):
        unique, repeats = unique_links(read_link_list(path))
        stats = self.crawler.stats
        stats.set_value("imgur/links_listed", len(unique) + repeats)
        stats.set_value("imgur/links_repeated", repeats)
        self.logger.info("link list %s: %d links, %d repeats recorded once", path, len(unique) + repeats, repeats)
        pending = deque(unique[:self.max_items])
        del unique
        while pending:   # each link is let go once its request is made: memory shrinks as the crawl goes
            yield self.link_request(pending.popleft())

    @staticmethod
    def job_for_link(link: ListedLink) -> dict:
        """A distributed job for one listed link: ``{"link": text, "line": n}``, with ``problem`` for a cell
        that could not be read (see ``request_for_job``)."""
        return {"link": link.text, "line": link.line, **({"problem": link.problem} if link.problem else {})}

    def link_request(self, link: ListedLink):
        """One listed link -> the request for its image, or (unusable link, video) its record at once."""
        if link.image_id is None:
            return self.link_record(link, reasons.BAD_ROW, detail=link.problem or
                                    f"line {link.line}: not a direct imgur image link: {excerpt(link.text)}")
        if link.is_video:
            return self.link_record(link, reasons.ANIMATED)
        url = f"{self.settings.get('IMGUR_IMAGES').rstrip('/')}/{link.image_id}.{link.ext}"
        # dont_filter: the list is de-duplicated already, and every removed image redirects to the same
        # removed.png, which the dupefilter would drop from the second one on (filtered_duplicate, not removed)
        return scrapy.Request(url, callback=self.parse_image, errback=self.on_image_error, dont_filter=True,
                              meta={"link": link, "manifest_key": (SOURCE, link.image_id)})

    def parse_image(self, response):
        item = self.link_record(response.meta["link"], reasons.OK)
        item.update(body=response.body, file_urls=[response.url], keep_animated=self.include_animated)
        return item

    def on_image_error(self, failure):
        request = failure.request
        return self.link_record(request.meta["link"], reason_for_failure(failure), capture_url=request.url)

    @staticmethod
    def link_record(link: ListedLink, status: str, **extra) -> dict:
        return {"source": SOURCE, "source_id": link.source_id, "label": 1, "status": status, "url": link.text,
                **extra}

    # ---- distributed jobs --------------------------------------------------
    @staticmethod
    def job_for_page(page: int) -> dict:
        return {"page": page}

    def request_for_job(self, job: dict):
        if "link" in job:
            line = int(job.get("line", 0))
            link = ListedLink(line, job["link"], None, problem=job["problem"]) if job.get("problem") else \
                parse_link(job["link"], line)
            obj = self.link_request(link)
            if isinstance(obj, scrapy.Request):
                return obj
            # a record needs no download, but a job must become a request: carry it through a data: URL
            return scrapy.Request("data:,", callback=self.emit_record, dont_filter=True,
                                  meta={"record": obj, "manifest_key": (SOURCE, obj["source_id"])})
        return self.page_request(int(job["page"]), chain=False)

    def emit_record(self, response):
        return response.meta["record"]

    # ---- the gallery -------------------------------------------------------
    @property
    def gallery(self) -> str:
        return f"t/{self.tag}/{self.sort}/{self.window}"

    def state_path(self) -> Path:
        return Path(self.settings.get("MANIFEST_DIR")) / f"{self.name}-{self.gallery.replace('/', '-')}.state.json"

    def save_state(self) -> None:
        if self.state is not None:
            self.state.save(self.state_path())

    def api_request(self, path: str, callback, **meta):
        return scrapy.Request(f"{self.settings.get('IMGUR_API').rstrip('/')}/3/{path}", callback=callback,
                              errback=self.on_api_error, dont_filter=True,
                              headers={"Authorization": f"Client-ID {client_id(self.settings)}"},
                              meta={"imgur_api": True, "download_slot": "imgur-api", **meta})

    def page_request(self, page: int, chain: bool = True):
        """``chain``: request the next page after this one (off when the feeder hands out pages)."""
        return self.api_request(f"gallery/{self.gallery}/{page}", self.parse_page, page=page, chain=chain)

    def album_request(self, album: dict):
        return self.api_request(f"album/{album['id']}/images", self.parse_album, album=album,
                                manifest_key=(SOURCE, str(album["id"])))

    def parse_page(self, response):
        page, chain = response.meta["page"], response.meta["chain"]
        data = api_data(response.body)   # a malformed answer never gets here (crawler/middlewares.py)
        items = gallery_items(data)
        if items is None:
            self.crawler.stats.inc_value("imgur/unknown_shape")
            self.logger.error("page %d: unknown shape of data (%s): skipped", page, type(data).__name__)
        before = self.claims
        out = []
        for entry in (e for e in items or [] if isinstance(e, dict)):
            if not entry.get("is_album"):
                out += self.images([entry])
            elif self.claim_id(f"album:{entry.get('id')}"):
                if isinstance(entry.get("images"), list):
                    out += self.images(entry["images"], album=entry)
                elif self.state is None or str(entry.get("id")) not in self.state.albums_done:
                    album = {k: entry.get(k) for k in ("id", "title", "tags")}
                    if self.state is not None:
                        self.state.albums_pending[str(album["id"])] = album
                    out.append(self.album_request(album))
        if self.state is not None:
            self.state.pages_done.append(page)
            self.save_state()
        yield from out
        if not chain:
            return
        if items == []:
            self.stop(reasons.Stop.GALLERY_END, "page %d is empty: end of the gallery, stopping", page)
            return
        self.stale_pages = 0 if items is None or self.claims > before else self.stale_pages + 1
        if self.stale_pages >= self.settings.getint("IMGUR_STALE_PAGES"):
            self.stop(reasons.Stop.NO_NEW_ITEMS,
                      "pages %d-%d brought nothing new (the gallery repeats itself): stopping",
                      page - self.stale_pages + 1, page)
            return
        if self.full() or (self.max_pages is not None and page + 1 >= self.max_pages):
            return
        yield self.page_request(page + 1)

    def parse_album(self, response):
        album = response.meta["album"]
        data = api_data(response.body)
        if not isinstance(data, list):
            self.crawler.stats.inc_value("imgur/unknown_shape")
            self.logger.error("album %s: unknown shape of data (%s): skipped", album["id"], type(data).__name__)
        yield from self.images(data if isinstance(data, list) else [], album=album)
        self.album_finished(album)

    def album_finished(self, album: dict) -> None:
        if self.state is not None:
            self.state.albums_pending.pop(str(album["id"]), None)
            self.state.albums_done.append(str(album["id"]))
            self.save_state()

    def full(self) -> bool:
        return self.max_items is not None and self.emitted >= self.max_items

    def claim_id(self, key: str) -> bool:
        if self.claim(key, self.seen):
            self.claims += 1
            return True
        return False

    def images(self, entries, album=None) -> list[dict]:
        out = []
        for img in (e for e in entries if isinstance(e, dict)):
            image_id = str(img.get("id", ""))
            if not image_id or self.full() or not self.claim_id(image_id):
                continue
            self.emitted += 1
            item = {"source": SOURCE, "source_id": image_id, "label": 1, "status": reasons.OK,
                    "url": img.get("link"), "title": img.get("title") or (album or {}).get("title"),
                    "tags": [t.get("name") for t in (img.get("tags") or (album or {}).get("tags") or [])] or None,
                    "width": img.get("width"), "height": img.get("height"),
                    "animated": bool(img.get("animated")), "template": (album or {}).get("id")}
            if is_video(img) or (img.get("animated") and not self.include_animated):
                item.update(status=reasons.ANIMATED)
            elif not img.get("link"):
                item.update(status=reasons.NO_LINK)
            else:
                item.update(file_urls=[img["link"]], keep_animated=self.include_animated)
            out.append(item)
        return out

    def stop(self, reason: str, message: str, *args, level: int = logging.INFO) -> None:
        self.stop_reason = reason
        self.crawler.stats.set_value("imgur/stop_reason", reason)
        self.logger.log(level, message, *args)

    def on_api_error(self, failure):
        request, exc = failure.request, failure.value
        reason = reason_for_failure(failure)
        album = request.meta.get("album")
        if reason != reasons.BLOCKED and isinstance(exc, HttpError) and \
                is_auth_error(exc.response.status, exc.response.body, gallery_page=album is None):
            self.stop(reasons.Stop.AUTH_REFUSED, "imgur refused the client id (%s: %s): IMGUR_CLIENT_ID is wrong or "
                      "revoked; %s; stopping", reason, api_error_text(exc.response.body), CLIENT_ID_HELP,
                      level=logging.ERROR)
            raise CloseSpider(reasons.Stop.AUTH_REFUSED)
        if reason == reasons.QUOTA_EXHAUSTED:
            self.stop(reasons.Stop.QUOTA_EXHAUSTED, "stopping before imgur's rate limit runs out (%s)", request.url)
            return None
        if album is None:
            self.stop(reasons.Stop.PAGE_FAILED, "gallery page %d failed (%s): stopping; a re-run starts from it",
                      request.meta["page"], reason, level=logging.ERROR)
            return None
        self.logger.error("album %s failed (%s): recorded, the crawl goes on", album["id"], reason)
        if reasons.is_final(reason):
            self.album_finished(album)
        return {"source": SOURCE, "source_id": str(album["id"]), "label": 1, "status": reason,
                "url": request.url, "title": album.get("title"), "template": album["id"],
                "detail": f"album {album['id']}: its images are unknown"}

    def closed(self, reason: str) -> None:
        if self.state is not None:
            self.state.complete = (reason == "finished" and not self.state.albums_pending and self.stop_reason
                                   not in (reasons.Stop.QUOTA_EXHAUSTED, reasons.Stop.PAGE_FAILED))
            self.save_state()
