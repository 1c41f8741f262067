"""Item pipelines: store original image bytes, then append the manifest record."""

from __future__ import annotations

import hashlib
import os
import socket
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

from itemadapter import ItemAdapter
from scrapy.pipelines.files import FilesPipeline, FSFilesStore
from scrapy.pipelines.media import FileException
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

from processing import reasons
from processing.decode import probe_image
from processing.files import NOT_WRITABLE, writable_folder
from processing.manifest import ManifestWriter, Record
from processing.reasons import Rejected

from .faults import is_challenge, reason_for_failure
from .imgur_links import is_removed_placeholder

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}
REMOVED_PATH = "/removed.png"


def _rejected(url: str, reason: str, detail: str = "") -> dict:
    return {"url": url, "status": "rejected", "reason": reason, "detail": detail}


class SharedFSFilesStore(FSFilesStore):
    """FSFilesStore whose folders may be created by many processes at once.

    Scrapy's own ``_mkdir`` checks, then creates: two workers starting together (or two writer threads) both
    see the folder missing and the second ``mkdir`` raises ``FileExistsError``. Creating with ``exist_ok``
    is race-free across threads and processes.
    """

    def _mkdir(self, dirname: Path, domain=None) -> None:
        seen = self.created_directories[domain] if domain else set()
        if str(dirname) not in seen:
            dirname.mkdir(parents=True, exist_ok=True)
            seen.add(str(dirname))


class RecentResults(dict):
    """A dict that forgets its oldest entries beyond ``limit`` (insertion order)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > self.limit:
            del self[next(iter(self))]


class MemeFilesPipeline(FilesPipeline):
    """Scrapy's FilesPipeline, keeping the original bytes (no re-encode).

    * Files are content-addressed: ``full/<sha256[:2]>/<sha256>.<ext>``.
    * Bytes the spider already fetched (``item["body"]``, the loc_archive
      case where the spider must see them to verify MD5) are persisted through
      the ``media_to_download`` hook instead of being fetched twice.
    * Every file is fully decoded in a worker thread (never on the reactor)
      to prove it is an image; a failure becomes the item's ``status``.
    * imgur's removed placeholder (a redirect to ``removed.png``, or its bytes
      served directly: ``IMGUR_REMOVED_MD5``) becomes ``removed``; an
      animated image becomes ``animated`` when the item says
      ``keep_animated=False``. Neither is stored.
    * Only the last ``MEDIA_CACHE_SIZE`` results are remembered (``SpiderInfo``),
      so a long crawl's memory does not grow with its rows.
    """

    STORE_SCHEMES = {**FilesPipeline.STORE_SCHEMES, "": SharedFSFilesStore, "file": SharedFSFilesStore}

    class SpiderInfo(FilesPipeline.SpiderInfo):
        """Scrapy's per-crawl media state, remembering only the last ``MEDIA_CACHE_SIZE`` file results."""

        def __init__(self, spider):
            super().__init__(spider)
            self.downloaded = RecentResults(spider.crawler.settings.getint("MEDIA_CACHE_SIZE"))

    def __init__(self, store_uri, *, crawler):
        super().__init__(store_uri, crawler=crawler)
        self.max_pixels = crawler.settings.getint("IMAGE_MAX_PIXELS")
        self.local_root = None if "://" in str(store_uri) else Path(store_uri).resolve()
        self.removed_md5 = {m.lower() for m in crawler.settings.getlist("IMGUR_REMOVED_MD5")}

    async def media_to_download(self, request, info, *, item=None):
        body = ItemAdapter(item).get("body")
        if body is None:
            return None  # no cached copy: download (resume is decided before any request)
        return await self._persist(body, request.url, info, keep_animated=ItemAdapter(item).get("keep_animated", True))

    async def media_downloaded(self, response, request, info, *, item=None):
        if response.status != 200:
            reason = reasons.BLOCKED if is_challenge(response) else reasons.http_reason(response.status)
            return _rejected(response.url, reason)
        return await self._persist(response.body, response.url, info,
                                   keep_animated=ItemAdapter(item).get("keep_animated", True))

    def media_failed(self, failure, request, info):
        raise FileException(reason_for_failure(failure))

    async def _persist(self, body: bytes, url: str, info, keep_animated: bool = True) -> dict:
        if urlsplit(url).path.endswith(REMOVED_PATH) or is_removed_placeholder(body, self.removed_md5):
            return _rejected(url, reasons.REMOVED)
        try:
            width, height, fmt, animated = await maybe_deferred_to_future(
                deferToThread(probe_image, body, max_pixels=self.max_pixels))
        except Rejected as exc:
            return _rejected(url, exc.reason, exc.detail)
        if animated and not keep_animated:
            return _rejected(url, reasons.ANIMATED)
        sha256 = hashlib.sha256(body).hexdigest()
        path = f"full/{sha256[:2]}/{sha256}.{_EXTENSIONS.get(fmt, 'img')}"
        await maybe_deferred_to_future(deferToThread(self.store.persist_file, path, BytesIO(body), info))
        self.inc_stats("downloaded")
        return {"url": url, "path": path, "checksum": hashlib.md5(body).hexdigest(), "status": "downloaded",
                "sha256": sha256, "width": width, "height": height, "animated": animated, "size": len(body)}

    def item_completed(self, results, item, info):
        adapter = ItemAdapter(item)
        adapter.pop("body", None)
        adapter.pop("keep_animated", None)
        if not adapter.get("file_urls"):
            return item  # a failure record from the spider: nothing to store
        ok, result = results[0]
        if not ok:
            if isinstance(result.value, FileException):   # raised by media_failed with a reason
                adapter["status"] = str(result.value) or reasons.CONNECTION_ERROR
            else:
                adapter.update(status=reasons.STORE_ERROR, detail=f"{type(result.value).__name__}: {result.value}")
        elif result["status"] == "rejected":
            adapter["status"] = result["reason"]
            adapter["detail"] = result.get("detail") or None
        else:
            stored = self.local_root / result["path"] if self.local_root else result["path"]
            adapter.update(status=reasons.OK, path=str(stored), sha256=result["sha256"], md5=result["checksum"],
                           width=result["width"], height=result["height"], animated=result["animated"],
                           size=result["size"], capture_url=result["url"])
        return item


def worker_manifest_name(spider_name: str) -> str:
    """One manifest per process: many workers can share a folder without locks."""
    return f"{spider_name}-{socket.gethostname()}-{os.getpid()}.jsonl"


def folder_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a folder to write in (it, or the nearest of its parents that exists, is a file,
    a device, ... or not writable); None when it can (it is one, or can be made one)."""
    place, problem = writable_folder(path)
    if problem is None:
        return None
    return f"{place} is {problem}" if problem == NOT_WRITABLE else f"{place} is {problem}, not a folder"


class ManifestPipeline:
    """Append one JSON Lines record per item as soon as it completes."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.dir = Path(crawler.settings.get("MANIFEST_DIR"))
        self.writer: ManifestWriter | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None):
        spider = self.crawler.spider
        self.writer = ManifestWriter(self.dir / worker_manifest_name(spider.name))

    def close_spider(self, spider=None):
        if self.writer:
            self.writer.close()

    def process_item(self, item, spider=None):
        data = ItemAdapter(item).asdict()
        data.pop("body", None)
        record = Record.from_dict(data)
        self.writer.write(record)
        self.crawler.stats.inc_value(f"manifest/{record.status}")
        return item
