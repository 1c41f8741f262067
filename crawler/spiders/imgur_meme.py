"""scrapy crawl imgur_meme [-a tag=meme] [-a sort=viral] [-a window=week] [-a max_items=N] [-a max_pages=N]

Pages through imgur's tag gallery (API v3) and hands every still image to the
media pipeline. Albums contribute their images (inline, or from the album
endpoint). Animated images and videos are recorded as ``animated`` unless
``-a include_animated=1``. The client id comes from ``IMGUR_CLIENT_ID``.
"""

from __future__ import annotations

import json
import os

import scrapy
from scrapy.exceptions import CloseSpider, UsageError

from processing import reasons

from ..distributed import RedisJobsMixin
from ..faults import reason_for_failure

SOURCE = "imgur"
SORTS = ("viral", "top", "time", "rising")
WINDOWS = ("day", "week", "month", "year", "all")
CLIENT_ID_HELP = ("no imgur client id: register an application at imgur's API site (api.imgur.com/oauth2/addclient), "
                  "then export IMGUR_CLIENT_ID=<id> or pass -s IMGUR_CLIENT_ID=<id>")


def client_id(settings) -> str:
    return settings.get("IMGUR_CLIENT_ID") or os.environ.get("IMGUR_CLIENT_ID", "")


class ImgurMemeSpider(RedisJobsMixin, scrapy.Spider):
    name = "imgur_meme"

    def __init__(self, tag="meme", sort="viral", window="week", max_items=None, max_pages=None,
                 include_animated="0", **kwargs):
        super().__init__(**kwargs)
        self.tag, self.sort, self.window = tag, sort, window
        self.max_items = int(max_items) if max_items else None
        self.max_pages = int(max_pages) if max_pages else None
        self.include_animated = str(include_animated).lower() in ("1", "true", "yes")
        self.seen: set[str] = set()
        self.emitted = 0

    @classmethod
    def validate_arguments(cls, settings, args: dict) -> None:
        if not client_id(settings):
            raise UsageError(CLIENT_ID_HELP)
        if args.get("sort", "viral") not in SORTS:
            raise UsageError(f"-a sort= takes one of {', '.join(SORTS)}")
        if args.get("window", "week") not in WINDOWS:
            raise UsageError(f"-a window= takes one of {', '.join(WINDOWS)}")
        for name in ("max_items", "max_pages"):
            if args.get(name) and not str(args[name]).isdigit():
                raise UsageError(f"-a {name}= takes a whole number")

    async def start(self):
        if not client_id(self.settings):
            raise CloseSpider("no_client_id")
        if self.distributed:
            for request in self.distributed_start():
                yield request
            return
        yield self.page_request(0)

    @staticmethod
    def job_for_page(page: int) -> dict:
        return {"page": page}

    def request_for_job(self, job: dict):
        return self.page_request(int(job["page"]), chain=False)

    def api_request(self, path: str, callback, **meta):
        return scrapy.Request(f"{self.settings.get('IMGUR_API').rstrip('/')}/3/{path}", callback=callback,
                              errback=self.on_api_error, dont_filter=True,
                              headers={"Authorization": f"Client-ID {client_id(self.settings)}"},
                              meta={"imgur_api": True, "download_slot": "imgur-api", **meta})

    def page_request(self, page: int, chain: bool = True):
        """``chain``: request the next page after this one (off when the feeder hands out pages)."""
        return self.api_request(f"gallery/t/{self.tag}/{self.sort}/{self.window}/{page}", self.parse_page, page=page,
                                chain=chain)

    def parse_page(self, response):
        page = response.meta["page"]
        data = self.json_data(response)
        items = (data or {}).get("items", []) if isinstance(data, dict) else []
        for entry in items:
            if entry.get("is_album"):
                if isinstance(entry.get("images"), list):
                    yield from self.images(entry["images"], album=entry)
                else:
                    yield self.api_request(f"album/{entry['id']}/images", self.parse_album, album=entry)
            else:
                yield from self.images([entry])
        if data is not None and not items:
            self.logger.info("page %d is empty: end of the gallery", page)
            return
        if not response.meta["chain"] or self.full() or (self.max_pages is not None and page + 1 >= self.max_pages):
            return
        yield self.page_request(page + 1)

    def parse_album(self, response):
        data = self.json_data(response)
        yield from self.images(data if isinstance(data, list) else [], album=response.meta["album"])

    def json_data(self, response):
        try:
            return json.loads(response.text)["data"]
        except (ValueError, KeyError, TypeError):
            self.crawler.stats.inc_value("imgur/malformed_json")
            self.logger.error("malformed JSON from %s: skipped", response.url)
            return None

    def full(self) -> bool:
        return self.max_items is not None and self.emitted >= self.max_items

    def images(self, entries, album=None):
        for img in entries:
            image_id = str(img.get("id", ""))
            if not image_id or self.full() or not self.claim(image_id, self.seen):
                continue
            self.emitted += 1
            item = {"source": SOURCE, "source_id": image_id, "label": 1, "status": reasons.OK,
                    "url": img.get("link"), "title": img.get("title") or (album or {}).get("title"),
                    "tags": [t.get("name") for t in (img.get("tags") or (album or {}).get("tags") or [])] or None,
                    "width": img.get("width"), "height": img.get("height"),
                    "animated": bool(img.get("animated")), "template": (album or {}).get("id")}
            is_video = str(img.get("type", "")).startswith("video/") or bool(img.get("mp4"))
            if (img.get("animated") or is_video) and not (self.include_animated and not is_video):
                item.update(status=reasons.ANIMATED)
            elif not img.get("link"):
                item.update(status=reasons.NO_LINK)
            else:
                item["file_urls"] = [img["link"]]
            yield item

    def on_api_error(self, failure):
        reason = reason_for_failure(failure)
        self.crawler.stats.set_value("imgur/stop_reason", reason)
        if reason in (reasons.http_reason(401), reasons.http_reason(403)):
            self.logger.error("imgur refused the client id (%s): check IMGUR_CLIENT_ID", reason)
            raise CloseSpider(f"imgur_{reason}")
        if reason == reasons.QUOTA_EXHAUSTED:
            self.logger.warning("stopping before imgur's rate limit runs out (%s)", failure.request.url)
            return
        self.logger.error("imgur API request failed (%s): %s", reason, failure.request.url)
