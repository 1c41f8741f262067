"""Distributed crawling on a real redis-server (127.0.0.1, started here): nothing fetched twice, nothing lost."""

import shutil
import signal
import subprocess
import sys
import json
import time
from collections import Counter

import pytest
import redis

from tests.support.testkit import ROOT, system_packages_missing
from tests.support.testkit import TS, CDN, crawl_settings, free_port, loc_corpus, manifest_records, scrapy_cmd, write_csv
from crawler.mirror import Mirror


def redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip(system_packages_missing("redis-server is", "redis-server"))
    return exe


def start_redis(port: int, folder, durable: bool = False) -> subprocess.Popen:
    """A redis-server on 127.0.0.1:port; ``durable``: its data survives a restart in the same folder."""
    persist = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    proc = subprocess.Popen([redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persist,
                             "--dir", str(folder)], stdout=subprocess.DEVNULL)
    client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def corpus_file(path, first: int, n: int):
    """Rows first..first+n-1 (all resolvable) written as a Meme Generator file; returns (ids, mirror items)."""
    ids = [str(first + i) for i in range(n)]
    items, rows = loc_corpus([(i, None) for i in ids])
    write_csv(path, rows)
    return ids, items


def feed(url, work, csv, *extra):
    (work / "manifests").mkdir(exist_ok=True)    # the workers' shared manifest folder must exist
    r = subprocess.run([sys.executable, "-m", "crawler.feed", "loc_archive", "--csv", str(csv), "--redis-url", url,
                        "--manifest-dir", str(work / "manifests"), *extra], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def worker(mirror, work, url, **settings):
    settings = {"MAX_IDLE_TIME_BEFORE_CLOSE": "2", "CONCURRENT_REQUESTS": "4", "CONCURRENT_REQUESTS_PER_DOMAIN": "4",
                **settings}
    cmd = scrapy_cmd("loc_archive", mirror, work, None, REDIS_URL=url, **settings)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_fetch_every_row_exactly_once(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    ids, items = corpus_file(tmp_path / "memes.tsv", 300, 40)
    with Mirror(items, latency=0.1) as mirror:
        assert "pushed 40 jobs" in feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        workers = [worker(mirror, tmp_path, redis_url) for _ in range(2)]
        logs = [w.communicate(timeout=180)[1] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], logs[0][-2000:]
        hits = dict(mirror.hits)
    records = manifest_records(tmp_path)
    assert sorted(r["source_id"] for r in records) == sorted(ids) and all(r["status"] == "ok" for r in records)
    files = list((tmp_path / "manifests").glob("loc_archive-*.jsonl"))
    assert len(files) == 2 and all(f.read_text().strip() for f in files)   # both workers did rows
    for i in ids:
        assert hits[f"/all/{TS}id_/{CDN.format(i)}"] == 1
    assert "ScrapyDeprecationWarning" not in "".join(logs)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_worker_loses_nothing(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    ids, items = corpus_file(tmp_path / "memes.tsv", 500, 60)
    with Mirror(items, latency=0.15) as mirror:
        feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        a, b = worker(mirror, tmp_path, redis_url), worker(mirror, tmp_path, redis_url)
        deadline = time.time() + 60
        while time.time() < deadline and len(manifest_records(tmp_path)) < 6:
            time.sleep(0.05)
        a.send_signal(signal.SIGKILL)
        a.wait()
        b.communicate(timeout=180)
        done = {r["source_id"] for r in manifest_records(tmp_path)}
        lost = set(ids) - done
        out = feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        assert f"pushed {len(lost)} jobs" in out and f"skipped {len(done)}" in out
        c = worker(mirror, tmp_path, redis_url)
        c.communicate(timeout=180)
        assert c.returncode == 0
    records = manifest_records(tmp_path)
    per_row = Counter(r["source_id"] for r in records)
    assert set(per_row) == set(ids) and all(r["status"] == "ok" for r in records)
    assert max(per_row.values()) == 1     # no row recorded twice


def test_without_redis_url_nothing_changes(tmp_path):
    from scrapy.settings import Settings

    from crawler.distributed import JobPump, RedisAddon
    plain, dist = Settings(), Settings({"REDIS_URL": "redis://127.0.0.1:1/0"})
    RedisAddon().update_settings(plain)
    RedisAddon().update_settings(dist)
    assert plain["SCHEDULER"] == dist["SCHEDULER"] == "scrapy.core.scheduler.Scheduler"
    assert plain.getdict("SPIDER_MIDDLEWARES") == {}
    assert dist.getdict("SPIDER_MIDDLEWARES") == {JobPump: 940}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_imgur_pages_shared_by_two_workers(redis_url, tmp_path):
    from tests.support.testkit import imgur_site
    redis.Redis.from_url(redis_url).flushdb()
    (tmp_path / "manifests").mkdir()
    r = subprocess.run([sys.executable, "-m", "crawler.feed", "imgur_meme", "--pages", "6", "--redis-url", redis_url,
                        "-s", f"MANIFEST_DIR={tmp_path / 'manifests'}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "pushed 6 jobs" in r.stdout
    with Mirror(imgur=imgur_site(), latency=0.05) as mirror:
        cmd = scrapy_cmd("imgur_meme", mirror, tmp_path, None, REDIS_URL=redis_url, MAX_IDLE_TIME_BEFORE_CLOSE="2",
                         IMGUR_CLIENT_ID="test-client")
        workers = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(2)]
        assert [w.wait(timeout=180) for w in workers] == [0, 0]
        hits = dict(mirror.hits)
    per_id = Counter(r["source_id"] for r in manifest_records(tmp_path))
    assert set(per_id) == {*(f"img{i}" for i in range(1, 11)), "gif1", "vid1", "gone"}
    assert max(per_id.values()) == 1                     # img1 is on two pages: claimed once across workers
    assert all(v == 1 for k, v in hits.items() if k.startswith("/i/"))
    assert hits["/3/gallery/t/meme/viral/week/5"] == 1   # each page handed out once, no chaining


def wait_for_records(work, n, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline and len(manifest_records(work)) < n:
        time.sleep(0.05)


def one_ok_record_per_row(work, ids):
    per_row = Counter(r["source_id"] for r in manifest_records(work))
    return set(per_row) == set(ids) and max(per_row.values()) == 1 and \
        all(r["status"] == "ok" for r in manifest_records(work))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_second_feed_during_a_crawl_pushes_nothing_queued_or_in_flight(redis_url, tmp_path):
    """The README's recovery step run while a crawl is live must not fetch anything twice."""
    redis.Redis.from_url(redis_url).flushdb()
    ids, items = corpus_file(tmp_path / "memes.tsv", 700, 40)
    with Mirror(items, latency=0.2) as mirror:
        assert "pushed 40 jobs" in feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        w = worker(mirror, tmp_path, redis_url)
        wait_for_records(tmp_path, 3)
        out = feed(redis_url, tmp_path, tmp_path / "memes.tsv")   # rows done, queued or in flight: none pushed
        assert "pushed 0 jobs" in out, out
        err = w.communicate(timeout=180)[1]
        assert w.returncode == 0, err[-2000:]
        hits = dict(mirror.hits)
    assert one_ok_record_per_row(tmp_path, ids)
    assert all(hits[f"/all/{TS}id_/{CDN.format(i)}"] == 1 for i in ids)
    assert "pushed 0 jobs" in feed(redis_url, tmp_path, tmp_path / "memes.tsv")   # after the crawl: all final


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_skips_a_job_whose_row_was_finished_elsewhere(redis_url, tmp_path):
    """A job pushed again for a row that got a final record meanwhile (a feeder that read the manifests just
    before the record was written) is dropped when popped, not fetched again."""
    from crawler.distributed import Keys
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    ids, items = corpus_file(tmp_path / "memes.tsv", 800, 6)
    with Mirror(items) as mirror:
        feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        w = worker(mirror, tmp_path, redis_url)
        assert w.communicate(timeout=120) and w.returncode == 0
        keys = Keys("loc_archive")
        job = client.hget(keys.job, "loc_archive/800")   # kept only while queued or claimed: gone when done
        assert job is None and client.sismember(keys.done, "loc_archive/800")
        client.hset(keys.job, "loc_archive/800", '{"until": "record", "job": {"row": {}}}')
        client.hset(keys.state, "loc_archive/800", "q")
        client.rpush(keys.jobs, "loc_archive/800")         # the stale push
        w = worker(mirror, tmp_path, redis_url)
        assert w.communicate(timeout=120) and w.returncode == 0
        hits = dict(mirror.hits)
    assert one_ok_record_per_row(tmp_path, ids)
    assert hits[f"/all/{TS}id_/{CDN.format('800')}"] == 1
    assert client.llen(keys.jobs) == 0 and not client.hexists(keys.state, "loc_archive/800")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_store_creation_is_race_free_across_processes(tmp_path):
    """Workers started together create the same FILES_STORE folders: Scrapy's FSFilesStore checks, then
    creates, and the loser of the race gets FileExistsError."""
    import multiprocessing as mp

    from tests.support.testkit import make_store_folders
    ctx = mp.get_context("spawn")   # fork would copy this test process's threads (Keras, servers): deadlock-prone
    with ctx.Manager() as manager:
        barrier = manager.Barrier(8)
        with ctx.Pool(8) as pool:
            errors = pool.map(make_store_folders, [(str(tmp_path), barrier, 40)] * 8)
    assert sum(errors) == 0
    assert len(list(tmp_path.glob("*/files/full/ab/*.jpg"))) == 8 * 40


def _cli(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wrong_redis_url_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "manifests").mkdir()
    _, items = corpus_file(tmp_path / "memes.tsv", 900, 1)
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    for url, cause in ((unreachable, "Connection"), ("redis://127.0.0.1:notaport/0", "port"),
                       ("http://127.0.0.1:6379", "scheme")):
        with Mirror(items) as mirror:
            r = _cli(["-m", "scrapy", "crawl", "loc_archive", *crawl_settings(mirror, tmp_path, REDIS_URL=url)])
        assert r.returncode == 2, r.stderr[-1500:]
        assert r.stderr.count("\n") == 1 and url in r.stderr and cause.lower() in r.stderr.lower(), r.stderr
        r = _cli(["-m", "crawler.feed", "loc_archive", "--csv", str(tmp_path / "memes.tsv"), "-s", f"REDIS_URL={url}",
                  "-s", f"MANIFEST_DIR={tmp_path / 'manifests'}"])
        assert r.returncode == 2, r.stderr[-1500:]
        assert r.stderr.count("\n") == 1 and url in r.stderr and cause.lower() in r.stderr.lower(), r.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_feeder_reads_the_workers_settings_and_manifests(redis_url, tmp_path):
    """After a finished crawl (and with Redis forgetting it), a feeder given the workers' settings (``-s``, as
    for scrapy) pushes nothing; a manifest folder that does not exist is refused."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    ids, items = corpus_file(tmp_path / "memes.tsv", 950, 5)
    with Mirror(items) as mirror:
        feed(redis_url, tmp_path, tmp_path / "memes.tsv")
        w = worker(mirror, tmp_path, redis_url)
        assert w.communicate(timeout=120) and w.returncode == 0
    client.flushdb()
    base = ["-m", "crawler.feed", "loc_archive", "--csv", str(tmp_path / "memes.tsv"), "-s", f"REDIS_URL={redis_url}"]
    r = _cli([*base, "-s", f"MANIFEST_DIR={tmp_path / 'manifests'}"])
    assert r.returncode == 0 and "pushed 0 jobs" in r.stdout and "skipped 5 with a final record" in r.stdout, r
    r = _cli([*base, "-s", f"MANIFEST_DIR={tmp_path / 'nowhere'}"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nowhere does not exist" in r.stderr, r.stderr
    assert client.llen("loc_archive:jobs") == 0


def restartable_redis(folder, durable: bool):
    """A redis-server of its own that a test may stop and restart (``restart(stop_only=True)`` leaves it down);
    ``durable``: it comes back with its data, else empty."""
    port = free_port()
    folder.mkdir()
    state = {"proc": start_redis(port, folder, durable=durable)}

    def restart(down_seconds: float = 0.0, stop_only: bool = False):
        state["proc"].terminate()
        state["proc"].wait(timeout=10)
        if not stop_only:
            time.sleep(down_seconds)
            state["proc"] = start_redis(port, folder, durable=durable)

    yield f"redis://127.0.0.1:{port}/0", restart
    state["proc"].terminate()
    state["proc"].wait(timeout=10)


@pytest.fixture
def durable_redis(tmp_path):
    yield from restartable_redis(tmp_path / "redis", durable=True)


@pytest.fixture
def volatile_redis(tmp_path):
    yield from restartable_redis(tmp_path / "redis", durable=False)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_short_redis_outage_is_ridden_out(durable_redis, tmp_path):
    """Redis away for 2 s mid-crawl: the worker says so, goes on, and every row is recorded once (exit 0)."""
    url, restart = durable_redis
    ids, items = corpus_file(tmp_path / "memes.tsv", 1000, 30)
    with Mirror(items, latency=0.2) as mirror:
        feed(url, tmp_path, tmp_path / "memes.tsv")
        w = worker(mirror, tmp_path, url, REDIS_RETRY_TIME="60", CONCURRENT_REQUESTS="2",
                   MAX_IDLE_TIME_BEFORE_CLOSE="3")
        wait_for_records(tmp_path, 4)
        restart(down_seconds=2)
        err = w.communicate(timeout=180)[1]
    assert w.returncode == 0, err[-2000:]
    assert "unreachable" in err and "is back" in err
    assert one_ok_record_per_row(tmp_path, ids)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_long_redis_outage_stops_the_worker_and_loses_nothing(durable_redis, tmp_path):
    """Redis away for longer than REDIS_RETRY_TIME: the worker stops with one clear line and exit 1 (it must
    not hang); once Redis is back, a feed and a worker finish every row, each recorded once."""
    url, restart = durable_redis
    ids, items = corpus_file(tmp_path / "memes.tsv", 1100, 30)
    with Mirror(items, latency=0.2) as mirror:
        feed(url, tmp_path, tmp_path / "memes.tsv")
        err = worker_stopped_by(lambda: restart(stop_only=True), mirror, tmp_path, url, REDIS_RETRY_TIME="2")
        assert f"stopping: Redis at {url} unreachable" in err
        restart()
        out = refeed_and_finish(mirror, tmp_path, url)
        assert "0 in flight" in out, out        # the stopped worker's claims are not held any more
    assert one_ok_record_per_row(tmp_path, ids)


def worker_stopped_by(redis_fault, mirror, work, url, **settings) -> str:
    """A worker that has recorded a few rows when ``redis_fault()`` strikes must stop with exit 1: its log."""
    w = worker(mirror, work, url, CONCURRENT_REQUESTS="2", MAX_IDLE_TIME_BEFORE_CLOSE="3", **settings)
    wait_for_records(work, 4)
    redis_fault()
    err = w.communicate(timeout=120)[1]
    assert w.returncode == 1, err[-2000:]
    return err


def refeed_and_finish(mirror, work, url) -> str:
    """Feed ``work/memes.tsv`` again and let one worker finish it: the feeder's output."""
    out = feed(url, work, work / "memes.tsv")
    w = worker(mirror, work, url)
    assert w.communicate(timeout=180) and w.returncode == 0
    return out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_queue_gone_with_a_redis_restarted_empty_stops_the_worker_and_a_refeed_finishes(volatile_redis, tmp_path):
    """Redis restarted without its data mid-crawl: the worker must not finish as if every row were done; it says
    the queue is gone and that a re-feed is needed (exit 1), and the re-feed pushes exactly the rows left."""
    url, restart = volatile_redis
    ids, items = corpus_file(tmp_path / "memes.tsv", 1200, 30)
    with Mirror(items, latency=0.2) as mirror:
        feed(url, tmp_path, tmp_path / "memes.tsv")
        err = worker_stopped_by(restart, mirror, tmp_path, url)
        line = next(x for x in err.splitlines() if "is gone" in x)
        assert "ERROR" in line and url in line and "python -m crawler.feed loc_archive" in line, line
        assert "'finish_reason': 'redis_queue_gone'" in err
        done = {r["source_id"] for r in manifest_records(tmp_path)}
        assert len(done) < len(ids)
        assert f"pushed {len(ids) - len(done)} jobs" in refeed_and_finish(mirror, tmp_path, url)
    assert one_ok_record_per_row(tmp_path, ids)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_feeder_says_which_skips_only_redis_remembers(redis_url, tmp_path):
    """A new, empty MANIFEST_DIR with a Redis that remembers an earlier crawl's done rows: the feeder must not
    call them rows with a final record; it says where the skip comes from and how to forget it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    (tmp_path / "manifests").mkdir()
    (tmp_path / "links.txt").write_text("https://i.imgur.com/abcde.jpg\nhttps://i.imgur.com/fghij.jpg\n")
    client.sadd("imgur_meme:done", "imgur/abcde")        # an earlier crawl's, with another MANIFEST_DIR
    r = _cli(["-m", "crawler.feed", "imgur_meme", "--urls", str(tmp_path / "links.txt"), "-s", f"REDIS_URL={redis_url}",
              "-s", f"MANIFEST_DIR={tmp_path / 'manifests'}"])
    assert r.returncode == 0 and "pushed 1 jobs" in r.stdout, r
    assert "skipped 0 with a final record in the manifests" in r.stdout, r.stdout
    assert "1 done in Redis's memory without a final record in the manifests" in r.stdout, r.stdout
    assert "--clear" in r.stdout and len(r.stdout.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_feed_imgur_link_list_one_job_per_link(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    (tmp_path / "manifests").mkdir()
    links = tmp_path / "memeurls.csv"
    links.write_text("https://i.imgur.com/abcde.jpg,https://i.imgur.com/fghij.png,https://i.imgur.com/abcde.jpg,"
                     "https://example.com/x.jpg")
    (tmp_path / "manifests" / "imgur_meme-old.jsonl").write_text(
        '{"source": "imgur", "source_id": "fghij", "label": 1, "status": "ok", "path": "full/fghij.png"}\n')
    args = ["-m", "crawler.feed", "imgur_meme", "--urls", str(links), "-s", f"REDIS_URL={redis_url}",
            "-s", f"MANIFEST_DIR={tmp_path / 'manifests'}"]
    r = _cli(args)
    assert r.returncode == 0 and "pushed 2 jobs" in r.stdout and "skipped 1 with a final record" in r.stdout, r
    jobs = {k: json.loads(client.hget("imgur_meme:job", k))["job"] for k in client.lrange("imgur_meme:jobs", 0, -1)}
    assert jobs == {"imgur/abcde": {"link": "https://i.imgur.com/abcde.jpg", "line": 1},
                    "imgur/line 1: https://example.com/x.jpg": {"link": "https://example.com/x.jpg", "line": 1}}
    r = _cli(args)
    assert r.returncode == 0 and "pushed 0 jobs" in r.stdout and "2 queued" in r.stdout, r
    links.write_bytes(b"\x00\xff\xfe binary")
    r = _cli(args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


def test_feeder_asks_for_the_csv_before_reading_anything(tmp_path, monkeypatch):
    """loc_archive without --csv is refused first: no Redis, no manifest folder, no manifest read."""
    from crawler import feed
    from processing.cliutil import UsageError

    monkeypatch.setattr(feed, "final_digests", lambda *a: pytest.fail("manifests read before --csv was checked"))
    with pytest.raises(UsageError, match="needs --csv"):
        feed.main(["loc_archive", "-s", f"MANIFEST_DIR={tmp_path / 'nowhere'}"])
    assert feed.SPIDERS["imgur_meme"].source != feed.SPIDERS["loc_archive"].source


def test_feeder_refuses_ids_that_are_not_meme_ids_before_reading_anything(tmp_path, monkeypatch):
    from crawler import feed
    from processing.cliutil import UsageError

    monkeypatch.setattr(feed, "final_digests", lambda *a: pytest.fail("manifests read before --ids was checked"))
    with pytest.raises(UsageError, match=r"--ids takes comma-separated Meme IDs .* got 'abc,,'"):
        feed.main(["loc_archive", "--csv", str(tmp_path / "m.csv"), "--ids", "abc,,"])
