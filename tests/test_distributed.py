"""Distributed crawling on a real redis-server (127.0.0.1, started here): nothing fetched twice, nothing lost."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis

from crawler.testkit import ROOT
from crawler.testkit import TS, CDN, free_port, loc_corpus, manifest_records, scrapy_cmd, write_csv
from crawler.mirror import Mirror


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed and could not be installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis"))], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def feed(url, work, csv, *extra):
    (work / "manifests").mkdir(exist_ok=True)    # the workers' shared manifest folder must exist
    r = subprocess.run([sys.executable, "-m", "crawler.feed", "loc_archive", "--csv", str(csv), "--redis-url", url,
                        "--manifest-dir", str(work / "manifests"), *extra], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def worker(mirror, work, url, **settings):
    cmd = scrapy_cmd("loc_archive", mirror, work, None, REDIS_URL=url, MAX_IDLE_TIME_BEFORE_CLOSE="2",
                     CONCURRENT_REQUESTS="4", CONCURRENT_REQUESTS_PER_DOMAIN="4", **settings)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_workers_fetch_every_row_exactly_once(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    ids = [str(300 + i) for i in range(40)]
    items, rows = loc_corpus([(i, None) for i in ids])
    write_csv(tmp_path / "memes.tsv", rows)
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


def test_killed_worker_loses_nothing(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    ids = [str(500 + i) for i in range(60)]
    items, rows = loc_corpus([(i, None) for i in ids])
    write_csv(tmp_path / "memes.tsv", rows)
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


def test_imgur_pages_shared_by_two_workers(redis_url, tmp_path):
    from crawler.testkit import imgur_site
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
    assert set(per_id) == {*(f"img{i}" for i in range(1, 10)), "gif1", "vid1", "gone"}
    assert max(per_id.values()) == 1                     # img1 is on two pages: claimed once across workers
    assert all(v == 1 for k, v in hits.items() if k.startswith("/i/"))
    assert hits["/3/gallery/t/meme/viral/week/5"] == 1   # each page handed out once, no chaining
