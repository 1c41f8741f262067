"""Scrapy settings for the meme-recognition crawlers.

The real sites are the defaults; tests and the demo point ``LOC_ARCHIVE`` and
``IMGUR_API`` at a local mirror with ``-s``. Setting ``REDIS_URL`` makes every
spider distributed (see crawler/distributed.py).
"""

import os

from processing import paths
from processing.decode import DEFAULT_MAX_PIXELS

BOT_NAME = "meme_recognition"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
COMMANDS_MODULE = "crawler.commands"

# ---- where things are ------------------------------------------------------
LOC_ARCHIVE = "https://webarchive.loc.gov/all"
LOC_CSV = str(paths.MEME_GENERATOR_CSV)   # the Meme Generator data set file; or -a csv=PATH
LOC_INDEX = "auto"            # where other captures are listed: cdx (pywb / Wayback CDX API), calendar, auto
LOC_INDEX_PROBE_URL = "http://memegenerator.net/"   # asked of the CDX APIs once per crawl to detect them
LOC_INDEX_PAGE_SIZE = 1000    # captures per CDX page (Wayback form; paged with its resume key)
LOC_INDEX_MAX_PAGES = 5       # CDX pages read per row at most
LOC_DEFAULT_TIMESTAMP = "20160901235959"             # end of the data set's capture window
IMGUR_API = "https://api.imgur.com"
IMGUR_CLIENT_ID = os.environ.get("IMGUR_CLIENT_ID", "")
IMGUR_QUOTA_RESERVE = 10      # stop paging with this many API requests left
IMGUR_QUOTA_SLOWDOWN = 100    # start spacing API requests out below this
# imgur, without the API: a list of direct image links (-a urls=FILE); used by the bare command when no client id
IMGUR_URLS = str(paths.IMGUR_LINKS)
IMGUR_IMAGES = "https://i.imgur.com"   # where listed links are fetched from (tests: the mirror's /i)
# imgur's "image removed" picture (https://i.imgur.com/removed.png, 161x81 px), served in place of a deleted image:
# the MD5 of its bytes (also its ETag); any download with one of these digests is recorded as ``removed``
IMGUR_REMOVED_MD5 = ["d835884373f4d6c8f24742ceabe74946"]
IMGUR_STALE_PAGES = 2         # stop paging after this many pages in a row bring nothing new

FILES_STORE = str(paths.FILES_STORE)
MANIFEST_DIR = str(paths.MANIFEST_DIR)
IMAGE_MAX_PIXELS = DEFAULT_MAX_PIXELS   # decompression-bomb cap, the same as the builder's

# ---- manners ---------------------------------------------------------------
USER_AGENT = "meme-recognition/0.1 (research crawler; Scrapy)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.25
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
DOWNLOAD_TIMEOUT = 60
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024
DOWNLOAD_WARNSIZE = 8 * 1024 * 1024

# ---- faults ----------------------------------------------------------------
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
RETRY_AFTER_MAX = 120.0
REDIRECT_ALLOWED_PRIVATE_HOSTS = []   # tests allow 127.0.0.1
MEDIA_ALLOW_REDIRECTS = True
# file results the media pipeline remembers to answer a repeated file URL without a request; Scrapy keeps
# every one (~900 bytes each: 45 MB over a full archive crawl), so memory grew with the rows. An older URL
# seen again is simply fetched again.
MEDIA_CACHE_SIZE = 1000

DOWNLOADER_MIDDLEWARES = {
    # Scrapy's filters, failing with a reason the spider records (crawler/drops.py)
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "crawler.drops.OffsiteDropMiddleware": 50,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.drops.RobotsMiddleware": 100,
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.SafeRedirectMiddleware": 600,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.RetryAfterMiddleware": 550,
    "crawler.middlewares.ImgurQuotaMiddleware": 560,
    "crawler.middlewares.MalformedAnswerMiddleware": 555,   # after the quota's headers are read
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "crawler.drops.UrlLengthDropMiddleware": 800,
    "crawler.resume.ResumeMiddleware": 950,
    "crawler.lazystart.LazyStartMiddleware": 50,   # after resume's skips: waits only for rows that need requests
}
# JOBDIR is a cache, the manifests the truth: the request queue stays in memory, a killed crawl's leftovers
# are put right (crawler/jobstate.py)
SCHEDULER = "crawler.jobstate.MemoryQueueScheduler"
EXTENSIONS = {
    "crawler.drops.DroppedRequests": 0,
    "crawler.rowguard.RowSummary": 0,
}
ITEM_PIPELINES = {
    "crawler.pipelines.MemeFilesPipeline": 300,
    "crawler.pipelines.ManifestPipeline": 800,
}

# ---- scale-out -------------------------------------------------------------
# REDIS_URL = "redis://host:6379/0"   # set it (or -s REDIS_URL=...) to crawl from a shared Redis queue
ADDONS = {"crawler.distributed.RedisAddon": 0}
MAX_IDLE_TIME_BEFORE_CLOSE = 30       # a distributed worker stops after this many idle seconds
REDIS_PREFETCH = 2.0                  # requests a worker keeps waiting, x CONCURRENT_REQUESTS: more jobs at half
REDIS_LEASE_TTL = 30                  # a dead worker's claims are re-fed this many seconds after its last heartbeat
REDIS_RETRY_TIME = 60                 # a worker retries an unreachable Redis this long, then stops with exit 1
REDIS_CONNECT_TIMEOUT = 5             # seconds per connection attempt

FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"
