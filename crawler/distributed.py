"""Distributed crawling on Redis: set ``REDIS_URL`` and nothing else changes.

* ``RedisAddon`` (enabled in settings) switches Scrapy to scrapy-redis's
  scheduler and dupefilter when ``REDIS_URL`` is set, so any number of
  ``scrapy crawl`` processes on any machines share one request queue.
* ``RedisJobsMixin`` lets a spider take its start jobs (JSON, pushed by
  ``python -m crawler.feed``) from ``<spider>:jobs`` instead of its own input,
  and close after ``MAX_IDLE_TIME_BEFORE_CLOSE`` seconds without work.
* scrapy-redis pops a job for good, so a killed worker's in-flight rows would
  vanish: the manifests stay the source of truth, and re-running the feeder
  enqueues exactly the rows that have no final record.
"""

from __future__ import annotations

import json

from scrapy.utils.misc import load_object
from scrapy_redis.scheduler import Scheduler as RedisScheduler
from scrapy_redis.spiders import RedisMixin

JOBS_KEY = "%(name)s:jobs"


def jobs_key(spider_name: str) -> str:
    return JOBS_KEY % {"name": spider_name}


class RedisAddon:
    """Scrapy add-on: distributed scheduling when REDIS_URL is set, untouched otherwise."""

    def update_settings(self, settings):
        if not settings.get("REDIS_URL"):
            return
        settings.set("SCHEDULER", "crawler.distributed.Scheduler", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        settings.set("SCHEDULER_PERSIST", True, priority="addon")   # a worker leaving must not clear the queue


class Scheduler(RedisScheduler):
    """scrapy-redis's scheduler, with the calls current Scrapy deprecates (``spider=`` in stats, ``Spider.log``)
    replaced."""

    def open(self, spider):
        self.spider = spider
        self.queue = load_object(self.queue_cls)(server=self.server, spider=spider,
                                                 key=self.queue_key % {"spider": spider.name},
                                                 serializer=self.serializer)
        if not self.df:
            self.df = load_object(self.dupefilter_cls).from_spider(spider)
        if self.flush_on_start:
            self.flush()
        if len(self.queue):
            spider.logger.info("joining a crawl with %d requests already queued", len(self.queue))

    def enqueue_request(self, request):
        if not request.dont_filter and self.df.request_seen(request):
            self.df.log(request, self.spider)
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        self.queue.push(request)
        return True

    def next_request(self):
        request = self.queue.pop(self.idle_before_close)
        if request and self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return request


class RedisJobsMixin(RedisMixin):
    """Start jobs from Redis when distributed; the spider's own ``start()`` otherwise.

    A spider implements ``request_for_job(job: dict)`` and its start
    coroutine calls ``self.distributed_start()`` first.
    """

    redis_key = JOBS_KEY

    @property
    def distributed(self) -> bool:
        return bool(self.settings.get("REDIS_URL"))

    def distributed_start(self):
        self.setup_redis(self.crawler)
        return self.next_requests()

    def make_request_from_data(self, data):
        job = json.loads(data)
        self.crawler.stats.inc_value("redis/jobs_popped")
        return self.request_for_job(job)

    def claim(self, key: str, local: set) -> bool:
        """True the first time any worker sees ``key`` (a Redis set when distributed)."""
        if self.distributed:
            self.setup_redis(self.crawler)
            return bool(self.server.sadd(f"{self.name}:claimed", key))
        if key in local:
            return False
        local.add(key)
        return True
