"""The service in process (FastAPI's TestClient): every route, bad inputs, limits, micro-batching, and the same
probabilities as ``training.predict``; under a real uvicorn on 127.0.0.1 (raw sockets): slow and silent clients,
the connection cap, and schemathesis against the OpenAPI contract. The model is an untrained memenet saved like
a run folder: the API does not care how good it is."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
import schemathesis
import uvicorn
from schemathesis import GenerationMode
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from PIL import Image

from tests.support.testkit import free_port, image_bytes, picture, save, untrained_run
from processing.reasons import DECOMPRESSION_BOMB, MEANINGS, NOT_AN_IMAGE, TRUNCATED
from processing.transform import DEFAULT_FIT, fit_region
from training import predict as predict_cli
from service.occlusion import drops, occluded_copies, occlusion_batch, occlusion_map, patch_edges
from training.preprocess import Preprocess
from service.app import (SETTINGS_ENV, STATIC, Service, Settings, app_from_env, create_app, load_service, main,
                            parse_args, uvicorn_options)

SETTINGS = Settings(max_request_bytes=400_000, max_images=4, max_pixels=1_000_000, max_batch=8, occlusion_grid=4)
REPORT = {"accuracy": 0.75, "precision": 0.5, "recall": 1.0, "f1": 0.6667, "roc_auc": 0.8, "count": 20, "memes": 8,
          "epochs_run": 1, "confusion_matrix": {"rows_true_cols_pred": [[9, 3], [0, 8]]}}


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("serve") / "run", report=REPORT)


@pytest.fixture(scope="module")
def service(run_folder):
    return load_service(run_folder, SETTINGS)


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A JPEG meme, a wide PNG with alpha, a tall greyscale picture: files on disk and their bytes."""
    folder = tmp_path_factory.mktemp("pictures")
    rgba = picture(300, 180, seed=2).convert("RGBA")
    rgba.putalpha(180)
    paths = [save(picture(250, 250, seed=1, caption="ONE DOES NOT SIMPLY"), folder / "meme.jpg", quality=90),
             save(rgba, folder / "wide.png"),
             save(picture(120, 400, seed=3, caption=None).convert("L"), folder / "tall.png")]
    return [(p, p.read_bytes()) for p in paths]


def multipart(*items):
    return [("files", (name, data, kind)) for name, data, kind in items]


def reference_probabilities(run_folder, paths, capsys) -> dict[str, float]:
    """What ``python -m training.predict RUN FILES --json`` prints, run in process."""
    capsys.readouterr()
    assert predict_cli.main([str(run_folder), *map(str, paths), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {rec["path"]: rec["meme_probability"] for rec in lines}


def bad_images() -> dict[str, tuple[bytes, str]]:
    good = image_bytes(picture(200, 200, seed=9), "PNG")
    bomb = image_bytes(Image.new("L", (1500, 1500)), "PNG")       # 2.25 Mpx in a few KB; SETTINGS cap 1 Mpx
    return {"text": (b"this is not a picture at all", NOT_AN_IMAGE),
            "empty_part": (b"", NOT_AN_IMAGE),
            "truncated": (good[: len(good) // 2], TRUNCATED),
            "bomb": (bomb, DECOMPRESSION_BOMB)}


# ---- the contract --------------------------------------------------------------------------------------------------

def test_openapi_documents_every_route_and_schema(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/healthz", "/v1/model", "/v1/predict", "/v1/explain"}
    for path, model in (("/v1/predict", "PredictResponse"), ("/v1/explain", "ExplainResponse")):
        op = spec["paths"][path]["post"]
        body = op["requestBody"]["content"]
        assert set(body) == {"multipart/form-data", "image/*"}
        form = body["multipart/form-data"]["schema"]          # what the server takes: 1 to max images, no empty body
        assert form["required"] == ["files"]
        assert (form["properties"]["files"]["minItems"], form["properties"]["files"]["maxItems"]) == (
            1, SETTINGS.max_images if path == "/v1/predict" else 1)
        assert body["image/*"]["schema"]["minLength"] == 1
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
        for code in ("400", "408", "413", "415", "503", "504"):
            assert op["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    assert spec["paths"]["/v1/model"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].endswith("ModelInfo")
    schemas = spec["components"]["schemas"]
    for name in ("ImageResult", "ImageError", "Preprocessing", "Region", "Timing", "Heatmap", "Health", "Limits"):
        assert name in schemas
    props = schemas["ImageResult"]["properties"]
    for key in ("meme_probability", "label", "threshold", "model_id", "preprocessing", "timing", "error"):
        assert key in props
    assert client.get("/docs").status_code == 404      # the docs pages would load scripts from a CDN


def test_healthz_and_model_describe_the_loaded_model(client, run_folder):
    model_id = hashlib.sha256((run_folder / "model.keras").read_bytes()).hexdigest()
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model_id"] == model_id
    assert health["in_flight"] == 0 and health["capacity"] == SETTINGS.max_concurrent
    info = client.get("/v1/model").json()
    assert info["model_id"] == model_id and info["arch"] == "memenet" and info["name"] == "memenet"
    assert info["threshold"] == 0.5 and info["parameters"] > 100_000
    assert info["input"] == {"fit": DEFAULT_FIT, "size": 128, "shape": [None, 128, 128, 3], "dtype": "uint8",
                             "color": "RGB", "label_names": ["non_meme", "meme"]}
    assert info["report"] == {k: v for k, v in REPORT.items() if k != "confusion_matrix"}
    assert info["limits"]["max_images"] == 4 and info["limits"]["max_pixels"] == 1_000_000


def test_page_and_its_files_are_served_without_any_cdn(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="files"' in page.text and 'type="file"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


# ---- predictions ---------------------------------------------------------------------------------------------------

def test_many_images_get_the_same_probabilities_as_training_predict(client, run_folder, pictures, capsys):
    expected = reference_probabilities(run_folder, [p for p, _ in pictures], capsys)
    r = client.post("/v1/predict", files=multipart(*[(p.name, data, "application/octet-stream")
                                                      for p, data in pictures]))
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3 and body["failed"] == 0
    for (path, data), result in zip(pictures, body["results"]):
        assert result["filename"] == path.name and result["ok"] and result["error"] is None
        assert result["meme_probability"] == pytest.approx(expected[str(path)], abs=1e-5)
        assert result["label"] == ("meme" if result["meme_probability"] >= 0.5 else "non_meme")
        assert result["threshold"] == 0.5 and result["model_id"] == body["model_id"]
        w, h = Image.open(io.BytesIO(data)).size
        pre = result["preprocessing"]
        assert (pre["source_width"], pre["source_height"], pre["fit"], pre["size"]) == (w, h, DEFAULT_FIT, 128)
        region = pre["region"]
        assert (region["top"], region["left"], region["side"]) == fit_region(h, w, DEFAULT_FIT)
        assert result["timing"]["batch_images"] >= 3 and result["timing"]["model_ms"] > 0
    assert len({round(r["meme_probability"], 6) for r in body["results"]}) == 3   # the pictures differ
    # one image as a raw body gives the same answer
    path, data = pictures[1]
    raw = client.post("/v1/predict", content=data, headers={"content-type": "image/png"}).json()
    assert raw["count"] == 1 and raw["results"][0]["filename"] is None
    assert raw["results"][0]["meme_probability"] == pytest.approx(expected[str(path)], abs=1e-5)


@pytest.mark.parametrize("case", sorted(bad_images()))
def test_a_bad_image_gets_its_reason_beside_the_good_ones(client, case):
    data, reason = bad_images()[case]
    good = image_bytes(picture(200, 150, seed=4), "JPEG")
    r = client.post("/v1/predict", files=multipart(("good.jpg", good, "image/jpeg"), (f"{case}.png", data, "image/png")))
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2 and body["failed"] == 1
    ok, bad = body["results"]
    assert ok["ok"] and 0 <= ok["meme_probability"] <= 1
    assert not bad["ok"] and bad["meme_probability"] is None and bad["label"] is None
    assert bad["error"]["reason"] == reason and bad["error"]["meaning"] == MEANINGS[reason]
    alone = client.post("/v1/predict", content=data, headers={"content-type": "image/png"})
    if data:
        assert alone.status_code == 200 and alone.json()["results"][0]["error"]["reason"] == reason
    else:
        assert alone.status_code == 400   # an empty body holds no image at all


@pytest.mark.parametrize("name,kwargs,status,detail", [
    ("empty body", {"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "no image in the request"),
    ("form without files", {"data": {"note": "hello"}, "files": {"x": (None, b"")}}, 400, "no image in the request"),
    ("file under another name", {"files": {"image": ("a.png", b"x", "image/png")}}, 400, "file parts named files"),
    ("text content type", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not text/plain"),
    ("a URL to fetch", {"json": {"url": "http://example.com/meme.jpg"}}, 415, "URLs are never fetched"),
    ("no content type", {"content": b"\xff\xd8\xff"}, 415, "no content type"),
    ("too many images", {"files": [("files", (f"{i}.png", b"x", "image/png")) for i in range(5)]}, 400,
     "Too many files"),
])
def test_request_level_errors_are_one_clear_status(client, name, kwargs, status, detail):
    r = client.post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_oversized_requests_are_refused_declared_or_streamed(client):
    big = np.random.default_rng(0).integers(0, 256, SETTINGS.max_request_bytes + 1, dtype=np.uint8).tobytes()
    r = client.post("/v1/predict", content=big, headers={"content-type": "image/png"})
    assert r.status_code == 413 and "over 400000 bytes" in r.json()["detail"]

    def chunks():                                    # no Content-Length: counted while it streams in
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "over 400000 bytes" in r.json()["detail"]
    r = client.post("/v1/explain", files=multipart(("big.png", big, "image/png")))
    assert r.status_code == 413
    assert client.get("/healthz").json()["in_flight"] == 0


def test_explain_scores_every_occluded_patch(client, service, pictures):
    path, data = pictures[0]
    r = client.post("/v1/explain", files=multipart((path.name, data, "image/jpeg")))
    assert r.status_code == 200
    body = r.json()
    result, heat = body["result"], body["heatmap"]
    predicted = client.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"}).json()
    assert result["meme_probability"] == pytest.approx(predicted["results"][0]["meme_probability"], abs=1e-5)
    assert result["timing"]["batch_images"] >= 1 + 4 * 4
    pixels = Preprocess().apply(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    p, expected = occlusion_map(service.batcher.predict, pixels, 4)
    assert heat["grid"] == 4 and heat["fill"] == 128 and heat["region"] == {"left": 0, "top": 0, "side": 250}
    assert np.allclose(heat["drops"], expected, atol=1e-5) and result["meme_probability"] == pytest.approx(p, abs=1e-5)
    assert heat["max_abs_drop"] == pytest.approx(np.abs(expected).max(), abs=1e-5) and heat["max_abs_drop"] > 0
    bad = client.post("/v1/explain", content=b"not a gif", headers={"content-type": "image/gif"}).json()
    assert bad["heatmap"] is None and bad["result"]["error"]["reason"] == NOT_AN_IMAGE
    two = client.post("/v1/explain", files=multipart(("a.jpg", data, "image/jpeg"), ("b.jpg", data, "image/jpeg")))
    assert two.status_code == 400 and "Too many files" in two.json()["detail"]


def test_one_log_line_per_request_and_never_its_bytes(client, caplog):
    secret = b"SECRET-IMAGE-BYTES-0123456789"
    with caplog.at_level(logging.INFO, logger="service"):
        client.get("/healthz")
        client.post("/v1/predict", content=secret, headers={"content-type": "image/png"})
        client.post("/v1/predict", content=secret, headers={"content-type": "text/plain"})
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "service"]
    assert len(lines) == 3
    assert '"GET /healthz" 200' in lines[0] and '"POST /v1/predict" 200' in lines[1] and " 415 " in lines[2]
    assert f"in={len(secret)}" in lines[1]
    assert not any("SECRET" in line for line in lines)


# ---- bounded work, timeouts, micro-batching --------------------------------------------------------------------------

class BlockingModel:
    """The real model behind a gate: each call waits for ``release`` (the first ``hold`` calls only)."""

    def __init__(self, predict, hold: int = 1):
        self.predict, self.hold = predict, hold
        self.entered, self.release = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def __call__(self, x):
        self.sizes.append(len(x))
        if len(self.sizes) <= self.hold:
            self.entered.set()
            assert self.release.wait(60), "never released"
        return self.predict(x)


def service_with(service, model, **settings) -> Service:
    s = Settings(**{**SETTINGS.__dict__, **settings})
    return Service(s, model, service.pre, service.model_id, service.info)


def post_in_thread(client, data, results, key):
    def go():
        results[key] = client.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"})
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_extra_requests_get_503_with_retry_after_not_a_queue(service):
    model = BlockingModel(service.batcher.predict)
    busy = service_with(service, model, max_concurrent=1)
    data = image_bytes(picture(200, 200, seed=5), "JPEG")
    results = {}
    with TestClient(create_app(busy)) as c:
        first = post_in_thread(c, data, results, "first")
        assert model.entered.wait(30)
        assert c.get("/healthz").json()["in_flight"] == 1
        refused = c.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["detail"]
        assert busy.batcher.waiting == 0                # the refused request never reached the model's queue
        model.release.set()
        first.join(30)
        assert results["first"].status_code == 200
        wait_until(lambda: busy.gate.in_use == 0)
        assert c.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"}).status_code == 200


def test_a_request_over_the_timeout_gets_504(service):
    model = BlockingModel(service.batcher.predict)
    slow = service_with(service, model, timeout_s=0.3)
    data = image_bytes(picture(200, 200, seed=6), "JPEG")
    with TestClient(create_app(slow)) as c:
        r = c.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"})
        assert r.status_code == 504 and "longer than 0.3 s" in r.json()["detail"]
        model.release.set()
        wait_until(lambda: slow.gate.in_use == 0)
        assert c.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"}).status_code == 200


def test_concurrent_requests_are_scored_in_one_model_call(service):
    """While the model is busy with request A, B, C and D queue up; they then go through in one call of 3."""
    model = BlockingModel(service.batcher.predict)
    batched = service_with(service, model, max_wait_ms=5.0)
    images = [image_bytes(picture(180, 180, seed=20 + i), "JPEG") for i in range(4)]
    results = {}
    with TestClient(create_app(batched)) as c:
        threads = [post_in_thread(c, images[0], results, 0)]
        assert model.entered.wait(30)
        threads += [post_in_thread(c, images[i], results, i) for i in (1, 2, 3)]
        wait_until(lambda: batched.batcher.waiting == 3)
        model.release.set()
        for t in threads:
            t.join(30)
        alone = [c.post("/v1/predict", content=img, headers={"content-type": "image/jpeg"}).json() for img in images]
    assert model.sizes[:2] == [1, 3]
    for i in range(4):
        result = results[i].json()["results"][0]
        assert result["timing"]["batch_images"] == (1 if i == 0 else 3)
        assert result["meme_probability"] == pytest.approx(alone[i]["results"][0]["meme_probability"], abs=1e-5)


# ---- under a real uvicorn: slow and silent clients, the connection cap, the contract ------------------------------

@contextmanager
def live_server(service: Service):
    """The app under uvicorn as ``python -m service`` runs it (a thread here), on 127.0.0.1; its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(service), **uvicorn_options(service.settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive())
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{service.settings.port}"
    finally:
        server.should_exit = True
        thread.join(30)


def served_with(service, *flags: str) -> Service:
    """A service on a free port with the command-line ``flags``, around the loaded model."""
    _, settings = parse_args(["RUN", "--port", str(free_port()), *flags])
    return Service(settings, service.batcher.predict, service.pre, service.model_id, service.info)


def connection(url: str, sent: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30)
    sock.sendall(sent)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """All the server sends until it closes the connection (a socket timeout, 30 s, if it never does)."""
    with sock:
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post_jpeg(url: str, data: bytes) -> int:
    request = urllib.request.Request(f"{url}/v1/predict", data=data, headers={"Content-Type": "image/jpeg"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow   # deadlines of a second on a live server
def test_slow_uploads_hold_no_slot_and_silent_clients_are_dropped(service):
    """Four uploads stalled after 10 bytes and two connections that send a request line and then nothing, against
    two slots: normal clients are answered meanwhile, and each stalled connection gets 408 and is closed."""
    live = served_with(service, "--max-concurrent", "2", "--header-timeout-s", "1", "--body-timeout-s", "1",
                       "--body-min-rate", "1000")
    data = image_bytes(picture(200, 200, seed=7), "JPEG")
    head = b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
    with live_server(live) as url:
        slow = [connection(url, head % len(data) + data[:10]) for _ in range(4)]
        silent = [connection(url, b"POST /v1/predict HTTP/1.1\r\n") for _ in range(2)]
        assert get_json(f"{url}/healthz")["in_flight"] == 0      # their requests hold no slot
        assert [post_jpeg(url, data) for _ in range(4)] == [200] * 4
        for sock in slow:
            answer = until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
            assert b"request body not in after" in answer and b"(10 bytes)" in answer
        for sock in silent:
            answer = until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"request line and headers not in within 1 s" in answer
        assert post_jpeg(url, data) == 200


def test_connections_over_the_cap_get_503_and_are_closed(service):
    live = served_with(service, "--max-connections", "2")
    with live_server(live) as url:
        idle = [connection(url, b"") for _ in range(2)]
        answer = until_closed(connection(url, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"))
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        assert b"2 connections open" in answer
        for sock in idle:
            sock.close()
        wait_until(lambda: b" 200 " in until_closed(connection(url, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                                                                        b"Connection: close\r\n\r\n")))


@pytest.fixture(scope="module")
def live_url(service):
    """One real server for schemathesis, with the tests' small limits."""
    with live_server(service_with(service, service.batcher.predict, port=free_port())) as url:
        yield url


@pytest.mark.slow   # schemathesis against a live server
@pytest.mark.parametrize("method,path,mode", [
    ("GET", "/healthz", GenerationMode.POSITIVE), ("GET", "/v1/model", GenerationMode.POSITIVE),   # nothing to get wrong
    *[("POST", path, mode) for path in ("/v1/predict", "/v1/explain")
      for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]])
def test_the_server_keeps_its_openapi_contract(live_url, method, path, mode):
    """Requests generated from /openapi.json by schemathesis, within the contract or just outside it: no server
    error, every answer as the contract describes it, what it allows accepted and what it does not refused with
    one of its 4xx. Derandomized: the same requests on every run."""
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [400, 415]}}})
    operation = schemathesis.openapi.from_url(f"{live_url}/openapi.json", config=config)[path][method]

    @given(case=operation.as_strategy(mode))
    @hypothesis_settings(max_examples=10, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def keeps_it(case):
        case.call_and_validate()

    keeps_it()


# ---- the command -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["/nonexistent/run"], "model not found: /nonexistent/run (train one with python -m training.run)"),
    (["RUN", "--max-batch", "0"], "--max-batch must be positive"),
    (["RUN", "--port", "70000"], "--port must be between 1 and 65535, got 70000"),
    (["RUN", "--threshold", "2"], "--threshold must be between 0 and 1, got 2.0"),
])
def test_bad_command_lines_are_one_line_and_exit_2(run_folder, capsys, argv, message):
    from processing.cliutil import run_main

    argv = [str(run_folder) if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        run_main("service", main, argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == f"service: error: {message}"


@pytest.mark.timeout(30)
def test_a_model_that_is_a_fifo_is_refused_unopened(tmp_path, capsys):
    from processing.cliutil import run_main

    os.mkfifo(tmp_path / "model.keras")   # opened, it would block until the timeout
    with pytest.raises(SystemExit) as exc:
        run_main("service", main, [str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (f"service: error: model {tmp_path / 'model.keras'} is a FIFO, "
                                               f"not a .keras file: give a run folder or its model.keras")


@pytest.mark.slow   # loads the model as a worker process does
def test_worker_processes_build_the_app_from_the_environment(run_folder, monkeypatch):
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"model": str(run_folder), "threshold": 0.2, "max_images": 2}))
    with TestClient(app_from_env()) as c:
        info = c.get("/v1/model").json()
    assert info["threshold"] == 0.2 and info["limits"]["max_images"] == 2


# ---- occlusion, pure -------------------------------------------------------------------------------------------------

def test_occlusion_finds_the_patch_the_model_looks_at():
    """A fake model whose 'meme probability' is how white the top-left quadrant is: only those patches matter."""
    x = np.zeros((8, 8, 3), np.uint8)
    x[:4, :4] = 255

    def whiteness_of_top_left(batch):
        return batch[:, :4, :4].mean(axis=(1, 2, 3)) / 255

    p, d = occlusion_map(whiteness_of_top_left, x, grid=4)
    assert p == 1.0
    expected = np.zeros((4, 4))
    expected[:2, :2] = (1 - 128 / 255) / 4             # a quarter of the quadrant turned from white to grey
    assert np.allclose(d, expected)


def test_occluded_copies_cover_the_picture_once():
    x = np.full((10, 10, 1), 7, np.uint8)
    copies = occluded_copies(x, 3, fill=0)
    assert copies.shape == (9, 10, 10, 1)
    covered = (copies == 0).sum(axis=0)[:, :, 0]
    assert (covered == 1).all()                         # every pixel greyed in exactly one copy
    assert list(patch_edges(10, 3)) == [0, 3, 7, 10]
    assert np.array_equal(occlusion_batch(x, 3)[0], x)
    p, d = drops(np.array([0.9, 0.5, 0.9, 1.0, 0.8]), 2)
    assert p == 0.9 and np.allclose(d, [[0.4, 0.0], [-0.1, 0.1]])
    with pytest.raises(ValueError):
        patch_edges(4, 5)


@pytest.mark.slow
def test_a_lite0_model_is_served_with_the_probabilities_of_training_predict(tmp_path, pictures, capsys):
    """The pretrained-trunk classifier through the same service: same answers as predict, its arch described."""
    folder = untrained_run(tmp_path / "lite0", loudness=50.0, arch="lite0")
    expected = reference_probabilities(folder, [p for p, _ in pictures], capsys)
    with TestClient(create_app(load_service(folder, SETTINGS))) as lite0:
        assert lite0.get("/v1/model").json()["arch"] == "lite0"
        body = lite0.post("/v1/predict", files=multipart(*[(p.name, data, "application/octet-stream")
                                                           for p, data in pictures])).json()
    assert body["count"] == 3 and body["failed"] == 0
    for (path, _), result in zip(pictures, body["results"]):
        assert result["meme_probability"] == pytest.approx(expected[str(path)], abs=1e-5)
