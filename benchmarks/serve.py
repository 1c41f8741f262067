"""Load test of ``python -m service`` against the model's own batch throughput, side by side in one run;
and the same clients alone against beside slow uploaders.

    python benchmarks/serve.py [--model RUN] [--clients 16] [--seconds 20] [--images 64] [--max-batch 32,8,1]
                               [--scenario all|batching|slow-uploads] [--slow-clients 32] [--slow-rate 10]

Starts a real uvicorn (``python -m service``) on 127.0.0.1 and keeps
``--clients`` keep-alive connections busy for ``--seconds``, each posting one
JPEG per request as a raw ``image/jpeg`` body (the case micro-batching has to
gather across requests). The reference is ``training.predict``'s batch path:
``model.predict_on_batch`` on the same images, already decoded and prepared, in
batches of 32 (its ``--batch-size``), in this process while the server idles,
before and after the served runs. One served run per ``--max-batch`` value
(1 = no micro-batching).
The slow-uploads scenario starts one server with its default flags and measures
the same ``--clients`` alone, then beside ``--slow-clients`` connections that
each post a JPEG at ``--slow-rate`` bytes/s (a new one whenever the server
answers or closes one).
Without ``--model`` an untrained ``--arch`` model is used (speed does not depend on the
weights). Prints requests/s, p50/p99 latency, errors, the server's peak memory
and served/batch throughput, the normal clients' rate alone and beside the slow
ones; one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.memory import PeakMemory  # noqa: E402
from tests.support.testkit import free_port, meme_jpeg, untrained_run  # noqa: E402


def start_server(model: Path, port: int, log: Path, **flags) -> subprocess.Popen:
    args = [x for k, v in flags.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    proc = subprocess.Popen([sys.executable, "-m", "service", str(model), "--port", str(port), *args],
                            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the service did not start; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return proc
        except OSError:
            time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request_head(body: bytes) -> bytes:
    return (b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))


async def status_of(reader: asyncio.StreamReader) -> int | str:
    """The status of the answer that starts here, or "closed" where the server closed the connection instead."""
    try:
        return int((await reader.readline()).split()[1])
    except (IndexError, ConnectionError):
        return "closed"


async def one_client(port: int, bodies: list[bytes], offset: int, stop_at: float, latencies: list, errors: list):
    """Keep-alive HTTP/1.1 by hand: the load generator must cost far less CPU than the server it measures."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 1
            start = time.perf_counter()
            writer.write(request_head(body) + body)
            status = await status_of(reader)
            if status == "closed":
                errors.append(status)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            data = await reader.readexactly(length)
            if status == 200 and b'"failed":0' in data:
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(status)
    finally:
        writer.close()


async def slow_uploader(port: int, body: bytes, rate: float, outcomes: Counter) -> None:
    """Posts ``body`` at ``rate`` bytes/s until cancelled, on a new connection whenever the server answers (its
    status is counted in ``outcomes``) or closes one."""
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcomes["connect failed"] += 1
            await asyncio.sleep(1)
            continue
        answer = asyncio.ensure_future(status_of(reader))
        try:
            writer.write(request_head(body))
            for i in range(len(body)):
                if answer.done():
                    break
                writer.write(body[i:i + 1])
                await asyncio.sleep(1 / rate)
            outcomes[await answer] += 1
        except ConnectionError:
            outcomes["closed"] += 1
        finally:
            answer.cancel()
            writer.close()


async def load(port: int, bodies: list[bytes], clients: int, seconds: float):
    latencies, errors = [], []
    start = time.perf_counter()
    await asyncio.gather(*(one_client(port, bodies, k * 7, start + seconds, latencies, errors)
                           for k in range(clients)))
    return latencies, errors, time.perf_counter() - start


async def load_beside_slow(port: int, bodies: list[bytes], args) -> tuple:
    """``load`` while ``args.slow_clients`` slow uploaders are connected (they start a second earlier)."""
    outcomes = Counter()
    slow = [asyncio.ensure_future(slow_uploader(port, bodies[k % len(bodies)], args.slow_rate, outcomes))
            for k in range(args.slow_clients)]
    await asyncio.sleep(1)
    try:
        return *await load(port, bodies, args.clients, args.seconds), outcomes
    finally:
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)


def summary(latencies: list, errors: list, elapsed: float) -> dict:
    """The normal clients' figures: answered requests per second, latency, and the other answers by status."""
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "req_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "errors": len(errors), "errors_by_status": dict(Counter(map(str, errors)))}


def served(model: Path, bodies: list[bytes], args, max_batch: int, workdir: Path) -> dict:
    port = free_port()
    proc = start_server(model, port, workdir / f"serve_batch{max_batch}.log", max_batch=max_batch,
                        max_wait_ms=args.max_wait_ms, max_concurrent=max(32, args.clients))

    def model_calls() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return json.loads(r.read())["model_calls"]

    try:
        asyncio.run(load(port, bodies, args.clients, min(3.0, args.seconds)))   # warm-up: every batch size traced
        calls = model_calls()
        with PeakMemory(proc.pid) as memory:
            latencies, errors, elapsed = asyncio.run(load(port, bodies, args.clients, args.seconds))
        calls = model_calls() - calls
    finally:
        stop_server(proc)
    return {"max_batch": max_batch, **summary(latencies, errors, elapsed),
            "peak_rss_mb": round(memory.peak_rss / 2**20),
            "images_per_model_call": round(len(latencies) / max(calls, 1), 1)}


def slow_uploads(model: Path, bodies: list[bytes], args, workdir: Path) -> dict:
    """The normal clients alone, then beside the slow uploaders, on one server with its default flags."""
    port = free_port()
    proc = start_server(model, port, workdir / "serve_slow_uploads.log")
    try:
        asyncio.run(load(port, bodies, args.clients, min(3.0, args.seconds)))   # warm-up
        alone = summary(*asyncio.run(load(port, bodies, args.clients, args.seconds)))
        *beside, outcomes = asyncio.run(load_beside_slow(port, bodies, args))
    finally:
        stop_server(proc)
    return {"alone": alone, "beside_slow": summary(*beside), "slow_clients": args.slow_clients,
            "slow_rate": args.slow_rate, "slow_outcomes": dict(Counter({str(k): v for k, v in outcomes.items()}))}


def prepared(model: Path, bodies: list[bytes]):
    """The model, and the images decoded and prepared as ``training.predict`` does."""
    from processing.decode import decode_image
    from training.classifier import load_classifier

    keras_model, pre = load_classifier(model)
    return keras_model, np.stack([pre.apply(decode_image(b).rgb) for b in bodies])


def batch_throughput(keras_model, x: np.ndarray, max_batch: int, seconds: float) -> float:
    """training.predict's batch path: ``predict_on_batch`` on prepared images, in batches of ``max_batch``."""
    batches = [x[i:i + max_batch] for i in range(0, len(x), max_batch)]
    for b in batches:                                  # warm-up: trace each batch size once
        keras_model.predict_on_batch(b)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for b in batches:
            keras_model.predict_on_batch(b)
            done += len(b)
    return done / (time.perf_counter() - start)


def batching(model: Path, bodies: list[bytes], args, workdir: Path) -> dict:
    """One served run per ``--max-batch`` against ``predict_on_batch`` before and after them; printed and returned."""
    keras_model, x = prepared(model, bodies)
    before = batch_throughput(keras_model, x, args.predict_batch, args.seconds / 2)
    runs = [served(model, bodies, args, int(b), workdir) for b in args.max_batch.split(",")]
    after = batch_throughput(keras_model, x, args.predict_batch, args.seconds / 2)
    one_by_one = batch_throughput(keras_model, x, 1, args.seconds / 2)
    reference = max(before, after)   # measured before and after the served runs; the better one is the bar
    print(f"batch throughput (predict_on_batch, batches of {args.predict_batch}): {before:.1f} img/s before, "
          f"{after:.1f} img/s after the served runs; one image per call: {one_by_one:.1f} img/s", flush=True)
    best = max(reference, one_by_one)  # on a CPU one image per call can beat batches of 32
    for run in runs:
        run["served_over_batch"] = round(run["req_s"] / reference, 3)
        run["served_over_best"] = round(run["req_s"] / best, 3)
        label = f"--max-batch {run['max_batch']}" + (" (no micro-batching)" if run["max_batch"] == 1 else "")
        print(f"served, {label}: {run['req_s']} req/s with {args.clients} clients "
              f"({run['images_per_model_call']} images per model call), p50 {run['p50_ms']} ms, "
              f"p99 {run['p99_ms']} ms, errors {run['errors']}, peak memory {run['peak_rss_mb']} MB, "
              f"served/batch {run['served_over_batch']} (target >= 0.8), served/best model-only "
              f"{run['served_over_best']}", flush=True)
    return {"predict_batch": args.predict_batch, "batch_img_s_before": round(before, 1),
            "batch_img_s_after": round(after, 1), "one_per_call_img_s": round(one_by_one, 1), "runs": runs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="run folder or .keras file (default: an untrained --arch model)")
    p.add_argument("--arch", default="memenet", help="the untrained model's architecture without --model")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--images", type=int, default=64, help="distinct 250x250 JPEGs sent round-robin")
    p.add_argument("--max-batch", default="32,8,1", help="the service's --max-batch, one served run per value")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--predict-batch", type=int, default=32, help="the reference's batch size (training.predict's)")
    p.add_argument("--scenario", choices=("all", "batching", "slow-uploads"), default="all")
    p.add_argument("--slow-clients", type=int, default=32, help="slow uploaders beside the clients")
    p.add_argument("--slow-rate", type=float, default=10, help="each slow uploader's bytes per second")
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory()
    workdir = Path(tmp.name)
    model = args.model or untrained_run(workdir / "run", arch=args.arch)
    bodies = [meme_jpeg(seed) for seed in range(args.images)]
    out = {"clients": args.clients, "seconds": args.seconds}
    if args.scenario in ("all", "batching"):
        out |= batching(model, bodies, args, workdir)
    if args.scenario in ("all", "slow-uploads"):
        out["slow_uploads"] = slow = slow_uploads(model, bodies, args, workdir)
        for label, run in (("alone", slow["alone"]), (f"beside {args.slow_clients} slow uploaders at "
                                                      f"{args.slow_rate:g} B/s", slow["beside_slow"])):
            print(f"{args.clients} clients {label}: {run['req_s']} req/s answered, p50 {run['p50_ms']} ms, "
                  f"p99 {run['p99_ms']} ms, other answers {run['errors_by_status'] or 'none'}", flush=True)
        print(f"the slow uploaders' answers: {slow['slow_outcomes'] or 'none yet'}", flush=True)
    import keras

    print(json.dumps({"backend": keras.backend.backend(), **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
