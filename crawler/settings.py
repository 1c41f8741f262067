"""Scrapy settings for the meme-recognition crawlers.

The real sites are the defaults; tests and the demo point ``LOC_ARCHIVE`` and
``IMGUR_API`` at a local mirror with ``-s``. Setting ``REDIS_URL`` makes every
spider distributed (see crawler/distributed.py).
"""

import os

BOT_NAME = "meme_recognition"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
COMMANDS_MODULE = "crawler.commands"

# ---- where things are ------------------------------------------------------
LOC_ARCHIVE = "https://webarchive.loc.gov/all"
LOC_CSV = ""                  # the Meme Generator data set file; or -a csv=PATH
LOC_DEFAULT_TIMESTAMP = "20160901235959"             # end of the data set's capture window
IMGUR_API = "https://api.imgur.com"
IMGUR_CLIENT_ID = os.environ.get("IMGUR_CLIENT_ID", "")
IMGUR_QUOTA_RESERVE = 10      # stop paging with this many API requests left
IMGUR_QUOTA_SLOWDOWN = 100    # start spacing API requests out below this

FILES_STORE = "data/crawl/files"
MANIFEST_DIR = "data/crawl/manifests"
IMAGE_MAX_PIXELS = 64_000_000

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

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.SafeRedirectMiddleware": 600,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.RetryAfterMiddleware": 550,
    "crawler.middlewares.ImgurQuotaMiddleware": 560,
}
SPIDER_MIDDLEWARES = {
    "crawler.resume.ResumeMiddleware": 950,
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
