"""Distributed crawling on Redis: set ``REDIS_URL`` and nothing else changes.

``python -m crawler.feed`` pushes one job per row (or per imgur gallery page);
any number of ``scrapy crawl`` workers, on any machines, take jobs from Redis.
Each worker keeps its own Scrapy scheduler: a job, once claimed, is worked
from start to record by one worker, so follow-up requests never leave the
process (nothing to lose in Redis, no Redis round-trip per request).

Redis state, per spider (``<name>`` is the spider's name)::

    <name>:jobs          list   job keys waiting, in order
    <name>:job           hash   key -> {"until": "record"|"parsed", "job": {...}}
    <name>:state         hash   key -> "q" (queued) | worker id (claimed, "host:pid:nonce")
    <name>:done          set    keys finished for good (a final record, or a page parsed)
    <name>:fed           string set by every feed: while a worker sees it, the queue is the one it was fed
    <name>:worker:<id>   string a worker's heartbeat, expires after REDIS_LEASE_TTL

A row's job key is ``<source>/<source_id>``, the key of its manifest record;
it is released when the worker writes that record (``done`` if the record is
final, so a re-feed skips it; a transient record lets a re-feed push it
again). A job's claim lives as long as its worker: a worker that closes hands
its unfinished claims back to the queue; a worker that dies leaves claims
that the feeder treats as lost once the worker's heartbeat has expired or,
on the same host, its process is gone, and re-queues them. So feeding is
idempotent: a row that is queued, claimed by a live worker, or done is never
pushed again, and a worker skips a popped job that is already done.

While Redis is unreachable a worker keeps crawling the rows it holds, keeps
every release it could not send, and retries with backoff; after
``REDIS_RETRY_TIME`` seconds it stops (finish reason ``redis_unavailable``,
exit code 1). Its claims then expire like a dead worker's; its records are
in its manifest, which the feeder reads. A worker that finds the queue gone
(``<name>:fed`` vanished: Redis restarted empty, or was flushed or cleared)
stops at once (finish reason ``redis_queue_gone``, exit code 1) and says that
a re-feed is needed: the rows that were queued are nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
import weakref

import redis
from itemadapter import ItemAdapter
from scrapy import Request, signals
from scrapy.exceptions import CloseSpider

from processing import reasons

from .resume import ResumeMiddleware

QUEUED = "q"
UNTIL_RECORD, UNTIL_PARSED = "record", "parsed"
REDIS_UNAVAILABLE = "redis_unavailable"     # a finish reason, not a row's status
REDIS_QUEUE_GONE = "redis_queue_gone"       # a finish reason, not a row's status

# Pop up to ARGV[1] queued keys and claim them for worker ARGV[2]; drop keys that are done meanwhile.
_POP = """
local out = {}
local n = tonumber(ARGV[1])
while #out < 2 * n do
  local k = redis.call('LPOP', KEYS[1])
  if not k then break end
  if redis.call('HGET', KEYS[3], k) == 'q' then
    if redis.call('SISMEMBER', KEYS[4], k) == 1 then
      redis.call('HDEL', KEYS[3], k)
      redis.call('HDEL', KEYS[2], k)
    else
      redis.call('HSET', KEYS[3], k, ARGV[2])
      table.insert(out, k)
      table.insert(out, redis.call('HGET', KEYS[2], k))
    end
  end
end
return out
"""
# Release key ARGV[1] held by worker ARGV[2]; ARGV[3] == '1' marks it done.
_RELEASE = """
if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[1]) end
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""
# Hand keys ARGV[2..] held by worker ARGV[1] back to the front of the queue.
_REQUEUE = """
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[2], ARGV[i], 'q')
    redis.call('LPUSH', KEYS[1], ARGV[i])
  end
end
return 1
"""
# Feed: ARGV = key, expected state ('' = none), envelope, ... Pushes a key only if it is not done and its state is
# still what the feeder saw (none, or a dead worker's claim). Returns the keys pushed.
_FEED = """
local pushed = {}
for i = 1, #ARGV, 3 do
  local k, expected = ARGV[i], ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[4], k) == 0 then
    local state = redis.call('HGET', KEYS[3], k)
    if (state == false and expected == '') or state == expected then
      redis.call('HSET', KEYS[2], k, ARGV[i + 2])
      redis.call('HSET', KEYS[3], k, 'q')
      redis.call('RPUSH', KEYS[1], k)
      table.insert(pushed, k)
    end
  end
end
return pushed
"""


def connect(url: str, timeout: float) -> redis.Redis:
    """A client that fails fast (no hidden retries): the callers decide how long to retry."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None,
                                decode_responses=True)


def redis_url_problem(url: str, timeout: float) -> str | None:
    """Why ``url`` cannot be used (malformed, unreachable, refused), or None when Redis answers."""
    try:
        connect(url, timeout).ping()
    except (ValueError, redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def job_key(source: str, source_id) -> str:
    """The job key of a row: the key of its manifest record."""
    return f"{source}/{source_id}"


def worker_id() -> str:
    """``host:pid:nonce``: the nonce tells apart a restarted worker that got the same pid (pid 1 in a container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def worker_is_dead(client: redis.Redis, keys: "Keys", owner: str) -> bool:
    """A claim's worker is dead when its heartbeat expired, or it ran on this host and its process is gone."""
    if not client.exists(keys.worker(owner)):
        return True
    host, pid, _ = (owner.rsplit(":", 2) + ["", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Keys:
    def __init__(self, spider_name: str):
        self.name = spider_name
        self.jobs, self.job, self.state, self.done = (f"{spider_name}:{k}" for k in ("jobs", "job", "state", "done"))
        self.claimed = f"{spider_name}:claimed"
        self.fed = f"{spider_name}:fed"

    def worker(self, wid: str) -> str:
        return f"{self.name}:worker:{wid}"

    def all(self) -> list[str]:
        return [self.jobs, self.job, self.state, self.done, self.claimed, self.fed]


def feed_jobs(client: redis.Redis, spider_name: str, jobs: list[tuple[str, str, dict]]) -> dict:
    """Push ``(key, until, job)`` jobs that are not queued, claimed by a live worker, or done.

    Returns counts: pushed, queued, in_flight, done, lost (claims of dead workers, pushed again).
    """
    keys = Keys(spider_name)
    counts = dict(pushed=0, queued=0, in_flight=0, done=0, lost=0)
    client.set(keys.fed, "1")
    feed = client.register_script(_FEED)
    alive: dict[str, bool] = {}
    for start in range(0, len(jobs), 1000):
        batch = jobs[start:start + 1000]
        names = [k for k, _, _ in batch]
        with client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.state, names)
            pipe.smismember(keys.done, names)
            states, done = pipe.execute()
        argv = []
        for (key, until, job), state, is_done in zip(batch, states, done):
            if is_done:
                counts["done"] += 1
            elif state == QUEUED:
                counts["queued"] += 1
            elif state is not None and alive.setdefault(state, not worker_is_dead(client, keys, state)):
                counts["in_flight"] += 1
            else:
                counts["lost"] += state is not None
                argv += [key, state or "", json.dumps({"until": until, "job": job})]
        if argv:
            counts["pushed"] += len(feed(keys=[keys.jobs, keys.job, keys.state, keys.done], args=argv))
    return counts


class RedisAddon:
    """Scrapy add-on: distributed jobs when REDIS_URL is set, untouched otherwise."""

    def update_settings(self, settings):
        if not settings.get("REDIS_URL"):
            return
        settings.set_in_component_priority_dict("SPIDER_MIDDLEWARES", JobPump, 940)


class JobPump:
    """Spider middleware of a distributed worker: after the spider's own start, feeds it jobs from Redis.

    Whenever fewer than half of ``REDIS_PREFETCH`` x ``CONCURRENT_REQUESTS`` requests are waiting (scheduled or in
    the downloader) and the engine takes more, it claims jobs to fill that up, so the downloader never runs dry
    while jobs are queued, and a worker holds no more rows than it is about to fetch; it stops after ``MAX_IDLE_TIME_BEFORE_CLOSE`` seconds with nothing queued and nothing
    in flight. Sits outside ResumeMiddleware (950): its jobs bypass resume's start filter and are checked
    against resume's final records here, so a skipped job is released (as done) instead of held.
    """

    POLL = 0.05         # seconds between looks at the claims while jobs are coming
    EMPTY_POLL = 0.25   # seconds between pops of an empty queue

    def __init__(self, crawler):
        self.crawler = crawler
        s = crawler.settings
        self.url = s.get("REDIS_URL")
        self.client = connect(self.url, s.getfloat("REDIS_CONNECT_TIMEOUT"))
        self.prefetch = max(1, int(s.getfloat("REDIS_PREFETCH") * s.getint("CONCURRENT_REQUESTS")))
        self.waiting: weakref.WeakSet[Request] = weakref.WeakSet()   # scheduled, not out of the downloader yet
        self.idle_max = s.getfloat("MAX_IDLE_TIME_BEFORE_CLOSE")
        self.lease_ttl = s.getint("REDIS_LEASE_TTL")
        self.retry_time = s.getfloat("REDIS_RETRY_TIME")
        self.id = worker_id()
        self.claims: dict[str, str] = {}          # key -> until
        self.unsent: list[tuple[str, bool]] = []  # releases Redis did not take yet: (key, done)
        self.down_since: float | None = None
        self.fed_seen = False                     # the feeder's mark was seen: its vanishing means the queue is gone
        self.stopping = False
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(self.scheduled, signal=signals.request_scheduled)
        crawler.signals.connect(self.left, signal=signals.request_left_downloader)
        crawler.signals.connect(self.left, signal=signals.request_dropped)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def setup(self, spider):
        self.keys = Keys(spider.name)
        self.pop = self.client.register_script(_POP)
        self.release_script = self.client.register_script(_RELEASE)
        self.requeue = self.client.register_script(_REQUEUE)
        resume = next((m for m in self.crawler.engine.scraper.spidermw.middlewares
                       if isinstance(m, ResumeMiddleware)), None)
        self.is_done = resume.is_done if resume else (lambda key: False)

    # ---- Redis calls that survive an outage ------------------------------
    def _ok(self) -> None:
        if self.down_since is not None:
            self.crawler.spider.logger.info("Redis at %s is back after %.0f s", self.url,
                                            time.monotonic() - self.down_since)
        self.down_since = None

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            self.crawler.spider.logger.warning("Redis at %s unreachable (%s): retrying for up to %.0f s",
                                               self.url, exc, self.retry_time)
        self.crawler.stats.inc_value("redis/errors")
        if now - self.down_since >= self.retry_time and not self.stopping:
            self.stopping = True
            self.crawler.spider.logger.error(
                "stopping: Redis at %s unreachable for %.0f s (%s); claimed rows go back to the queue when their "
                "lease expires (REDIS_LEASE_TTL)", self.url, now - self.down_since, exc)
            raise CloseSpider(REDIS_UNAVAILABLE)

    def _flush(self) -> bool:
        """Send the releases and the heartbeat; False while Redis is down."""
        sending = list(self.unsent)
        try:
            with self.client.pipeline(transaction=False) as pipe:   # one round-trip; a release is idempotent
                for key, done in sending:
                    self.release_script(keys=[self.keys.job, self.keys.state, self.keys.done],
                                        args=[key, self.id, "1" if done else "0"], client=pipe)
                pipe.set(self.keys.worker(self.id), "1", ex=self.lease_ttl)
                pipe.exists(self.keys.fed)
                fed = pipe.execute()[-1]
            del self.unsent[:len(sending)]
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._ok()
        if fed:
            self.fed_seen = True
        elif self.fed_seen and not self.stopping:
            self._queue_gone()
        return True

    def _queue_gone(self) -> None:
        self.stopping = True
        self.crawler.spider.logger.error(
            "stopping: the job queue of %s in Redis at %s is gone (Redis restarted empty, or was flushed or "
            "cleared): the rows still queued are lost from it; re-run the feeder (python -m crawler.feed %s ...) "
            "to push again every row without a final record", self.keys.name, self.url, self.keys.name)
        raise CloseSpider(REDIS_QUEUE_GONE)

    def _pop(self, n: int) -> list[tuple[str, dict]] | None:
        try:
            flat = self.pop(keys=[self.keys.jobs, self.keys.job, self.keys.state, self.keys.done], args=[n, self.id])
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._ok()
        return [(flat[i], json.loads(flat[i + 1])) for i in range(0, len(flat), 2)]

    def claim_once(self, key: str) -> bool:
        """True the first time any worker claims ``key`` (the imgur spider's image ids). Blocks while Redis is
        down (the answer decides whether an item exists), up to REDIS_RETRY_TIME, then stops the crawl."""
        delay = self.POLL
        while True:
            try:
                added = self.client.sadd(self.keys.claimed, key)
            except (redis.RedisError, OSError) as exc:
                self._failed(exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._ok()
            return bool(added)

    # ---- the pump ----------------------------------------------------------
    async def process_start(self, start):
        async for obj in start:
            yield obj
        spider = self.crawler.spider
        self.setup(spider)
        idle_since = time.monotonic()
        last_beat = 0.0
        backoff = self.POLL
        while True:
            now = time.monotonic()
            if self.unsent or self.down_since is not None or now - last_beat >= self.lease_ttl / 3:
                if not self._flush():
                    backoff = min(backoff * 2, 5.0)
                    await asyncio.sleep(backoff)
                    continue
                last_beat, backoff = now, self.POLL
            room = self.prefetch - len(self.waiting)
            # refill in halves: one round-trip per half batch, and the other half still keeps the downloader busy
            asked = room >= max(1, self.prefetch // 2) and not self.crawler.engine.needs_backout()
            popped = self._pop(room) if asked else []
            if popped is None:
                backoff = min(backoff * 2, 5.0)
                await asyncio.sleep(backoff)
                continue
            for key, envelope in popped:
                self.crawler.stats.inc_value("redis/jobs_popped")
                if self.is_done(tuple(key.split("/", 1))):
                    self.crawler.stats.inc_value("redis/jobs_already_done")
                    self.unsent.append((key, True))
                    continue
                self.claims[key] = envelope["until"]
                out = spider.request_for_job(envelope["job"])
                if isinstance(out, Request):
                    out.meta["redis_job"] = key
                yield out
            if self.claims or popped:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_max and self._flush():   # the queue is empty, not gone
                spider.logger.info("no jobs for %.0f s: closing", self.idle_max)
                return
            await asyncio.sleep(self.EMPTY_POLL if asked and not popped else self.POLL)

    def scheduled(self, request, **kwargs):
        self.waiting.add(request)

    def left(self, request, **kwargs):
        self.waiting.discard(request)

    # ---- releasing ---------------------------------------------------------
    def _release(self, key: str, done: bool) -> None:
        if self.claims.pop(key, None) is not None or done:
            self.unsent.append((key, done))

    def item_scraped(self, item, response, spider):
        a = ItemAdapter(item)
        key = job_key(a.get("source"), a.get("source_id"))
        if self.claims.get(key) == UNTIL_RECORD:
            self._release(key, reasons.is_final(a.get("status")))

    async def process_spider_output_async(self, response, result, spider=None):
        async for obj in result:
            yield obj
        self._release_parsed(response)

    def process_spider_output(self, response, result, spider=None):
        yield from result
        self._release_parsed(response)

    def _release_parsed(self, response) -> None:
        """A job that ends once its response is parsed (an imgur page) is released when its output is done."""
        key = response.meta.get("redis_job")
        if key and self.claims.get(key) == UNTIL_PARSED:
            self._release(key, True)

    def spider_closed(self, spider, reason):
        """Hand unfinished claims back to the queue (a dead worker's claims expire instead)."""
        if not hasattr(self, "keys"):
            return
        try:
            self.stopping = True
            self._flush()
            if self.claims:
                self.requeue(keys=[self.keys.jobs, self.keys.state], args=[self.id, *self.claims])
                spider.logger.info("handed %d unfinished jobs back to the queue", len(self.claims))
            self.client.delete(self.keys.worker(self.id))
        except (redis.RedisError, OSError) as exc:
            spider.logger.warning("could not hand %d claims back to Redis (%s): they expire after %d s",
                                  len(self.claims), exc, self.lease_ttl)


class RedisJobsMixin:
    """Start jobs from Redis when distributed; the spider's own ``start()`` otherwise.

    A spider implements ``request_for_job(job: dict)`` (a Request, or a record for a job it cannot use);
    ``JobPump`` calls it for every job it pops, once the spider's own start is done.
    """

    @property
    def distributed(self) -> bool:
        return bool(self.settings.get("REDIS_URL"))

    def distributed_start(self):
        """Nothing of the spider's own: JobPump yields the jobs' requests after it."""
        return ()

    def claim(self, key: str, local: set) -> bool:
        """True the first time any worker sees ``key`` (a Redis set when distributed)."""
        if self.distributed:
            pump = next(m for m in self.crawler.engine.scraper.spidermw.middlewares if isinstance(m, JobPump))
            return pump.claim_once(key)
        if key in local:
            return False
        local.add(key)
        return True
