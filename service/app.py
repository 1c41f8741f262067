"""python -m service MODEL [--host 127.0.0.1] [--port 8000] [--workers N] [...]

Serves a trained model over HTTP (FastAPI + uvicorn) and a page to try it:

  GET  /             the page: drop, paste or choose pictures; probability, label and an occlusion heat map
  POST /v1/predict   one or more images (multipart/form-data file parts, or one raw image/* body) -> JSON per image
  POST /v1/explain   one image -> its prediction plus the occlusion heat map
  GET  /v1/model     architecture, input contract, threshold, training report headline, limits
  GET  /healthz      liveness and load
  GET  /openapi.json the contract

Images are decoded and prepared exactly as ``training.predict`` does, and the
images of concurrent requests are scored together in one model call
(micro-batching). Safe to expose: loopback by default, capped request size,
pixels, images per request, open connections, time to send the headers and
the body (a slow upload holds a connection, never a model slot: a request
takes one only once its body is in), time per request and requests in flight
(extra requests get 503 with Retry-After at once), no URL is ever fetched, one
log line per request without its contents. All limits are the flags below.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, fields
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from processing.cliutil import ArgumentParser, UsageError, file_digest
from processing.decode import decode_image
from processing.reasons import MEANINGS, Rejected
from processing.schema import LABEL_NAMES
from processing.transform import fit_region

from training.classifier import Preprocess, check_model, load_classifier

from .batching import Gate, MicroBatcher
from .connections import BodyGuard, GuardedH11Protocol, RequestLog
from .occlusion import GREY, drops, occlusion_batch

log = logging.getLogger("service")
SETTINGS_ENV = "MEME_SERVE_SETTINGS"   # how ``--workers N`` hands the settings to each worker process
REPORT_HEADLINE = ("accuracy", "precision", "recall", "f1", "roc_auc", "count", "memes", "epochs_run")
STATIC = resources.files("service") / "static"


@dataclass(frozen=True)
class Settings:
    """Every knob of the service, with its default; the CLI flags are generated from these fields."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_request_bytes: int = 16 * 1024 * 1024
    max_images: int = 16
    max_pixels: int = 25_000_000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_concurrent: int = 32
    max_connections: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate: int = 32768
    timeout_s: float = 30.0
    occlusion_grid: int = 8
    decode_threads: int = 2
    threshold: float | None = None


HELP = {
    "host": "address to listen on; keep the loopback default unless a proxy or firewall is in front",
    "port": "TCP port",
    "workers": "server processes, each with its own copy of the model",
    "max_request_bytes": "larger request bodies are refused with 413 before or while they are read",
    "max_images": "images per request",
    "max_pixels": "pixels per decoded image; more is a decompression bomb (per-image error)",
    "max_batch": "most images in one model call",
    "max_wait_ms": "how long a model call waits for more requests to fill its batch",
    "max_concurrent": "requests in progress at once (per worker), counted once their body is in; more get 503 with "
                      "Retry-After",
    "max_connections": "open connections (per worker); more are answered 503 and closed at once",
    "header_timeout_s": "longest wait for a request's line and headers (from the connection or the previous "
                        "response); then 408 and the connection is closed",
    "body_timeout_s": "a request body must be in within this many seconds plus one per --body-min-rate bytes "
                      "received; then 408 and the connection is closed",
    "body_min_rate": "bytes per second that extend the body's deadline (an upload at least this fast never times out)",
    "timeout_s": "longest a request may take once its body is in (decode, queue, model); then 504",
    "occlusion_grid": "the heat map's patches per side (grid x grid extra images per explained picture)",
    "decode_threads": "threads decoding images beside the model thread",
    "threshold": "meme probability threshold (default: the one stored with the model)",
}


def check_settings(s: Settings) -> None:
    positive = ("workers", "max_request_bytes", "max_images", "max_pixels", "max_batch", "max_concurrent",
                "max_connections", "header_timeout_s", "body_timeout_s", "body_min_rate", "timeout_s",
                "occlusion_grid", "decode_threads")
    for name in positive:
        if getattr(s, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if s.max_wait_ms < 0:
        raise UsageError("--max-wait-ms must not be negative")
    if not 0 < s.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {s.port}")
    if s.threshold is not None and not 0 <= s.threshold <= 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {s.threshold}")


# ---- the API's typed contract ----------------------------------------------------------------------------------

class Region(BaseModel):
    """The square of the picture (its own pixels) that was resampled to the model input; negative ``top`` or
    ``left`` (letterbox fit): the square reaches past the picture's edges, where the fit padded with grey."""
    left: int
    top: int
    side: int


class Preprocessing(BaseModel):
    fit: str
    size: int
    source_width: int
    source_height: int
    format: str | None
    animated: bool
    region: Region


class ImageError(BaseModel):
    reason: str
    meaning: str
    detail: str


class Timing(BaseModel):
    decode_ms: float
    queued_ms: float
    model_ms: float
    batch_images: int


class ImageResult(BaseModel):
    index: int
    filename: str | None
    ok: bool
    meme_probability: float | None
    label: Literal["non_meme", "meme"] | None
    threshold: float
    model_id: str
    preprocessing: Preprocessing | None
    timing: Timing | None
    error: ImageError | None


class PredictResponse(BaseModel):
    model_id: str
    count: int
    failed: int
    total_ms: float
    results: list[ImageResult]


class Heatmap(BaseModel):
    """Drop in meme probability when each patch of the model input is painted grey (row-major grid)."""
    grid: int
    fill: int
    drops: list[list[float]]
    max_abs_drop: float
    region: Region


class ExplainResponse(BaseModel):
    model_id: str
    total_ms: float
    result: ImageResult
    heatmap: Heatmap | None


class InputContract(BaseModel):
    fit: str
    size: int
    shape: list[int | None]
    dtype: str
    color: str
    label_names: list[str]


class Limits(BaseModel):
    max_request_bytes: int
    max_images: int
    max_pixels: int
    max_batch: int
    max_wait_ms: float
    max_concurrent: int
    max_connections: int
    header_timeout_s: float
    body_timeout_s: float
    body_min_rate: int
    timeout_s: float
    occlusion_grid: int


class ModelInfo(BaseModel):
    model_id: str
    arch: str
    name: str
    parameters: int
    threshold: float
    input: InputContract
    report: dict[str, float | int | None] | None
    limits: Limits


class Health(BaseModel):
    status: Literal["ok"]
    model_id: str
    in_flight: int
    capacity: int
    model_calls: int


class ErrorBody(BaseModel):
    detail: str


ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in (
    (400, "outside the request body's schema: no image, too many, or a malformed multipart body"),
    (408, "the body did not arrive within --body-timeout-s plus one second per --body-min-rate bytes; the "
          "connection is closed"),
    (413, "request body over --max-request-bytes"),
    (415, "neither multipart/form-data nor an image/* body"),
    (503, "--max-concurrent requests already in progress; retry after Retry-After seconds"),
    (504, "the request took longer than --timeout-s after its body was in"))}
FILES_FIELD = "files"   # the multipart field whose file parts are the images


def image_body(max_images: int) -> dict:
    """The request body of /v1/predict and /v1/explain, exactly what ``Service.read_uploads`` takes: 1 to
    ``max_images`` file parts named ``files``, or one raw image/* body that is not empty (the size limit is the
    whole body's, --max-request-bytes: the 413 answer and GET /v1/model say it)."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [FILES_FIELD], "properties": {
            FILES_FIELD: {"type": "array", "minItems": 1, "maxItems": max_images,
                          "items": {"type": "string", "format": "binary"}}}}},
        "image/*": {"schema": {"type": "string", "format": "binary", "minLength": 1}}}}}


# ---- the service -------------------------------------------------------------------------------------------------

def report_headline(folder: Path) -> dict | None:
    """The headline numbers of the run folder's report.json, if it has one."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: report[k] for k in REPORT_HEADLINE if k in report} if isinstance(report, dict) else None


@dataclass
class Prepared:
    pixels: np.ndarray
    preprocessing: Preprocessing
    decode_ms: float


def prepare(data: bytes, pre: Preprocess, max_pixels: int) -> Prepared:
    """Bytes to the model input, as ``training.predict`` prepares a file; raises ``Rejected``."""
    start = time.perf_counter()
    decoded = decode_image(data, max_pixels=max_pixels)
    h, w = decoded.rgb.shape[:2]
    top, left, side = fit_region(h, w, pre.fit, pre.size)
    info = Preprocessing(fit=pre.fit, size=pre.size, source_width=w, source_height=h, format=decoded.format,
                         animated=decoded.animated, region=Region(left=left, top=top, side=side))
    return Prepared(pre.apply(decoded.rgb), info, (time.perf_counter() - start) * 1000)


def prepare_all(uploads: list[tuple[str | None, bytes]], pre: Preprocess, max_pixels: int) -> list:
    """One ``Prepared`` or ``Rejected`` per upload, in order (one at a time: one full-size picture in memory)."""
    out = []
    for _, data in uploads:
        try:
            out.append(prepare(data, pre, max_pixels))
        except Rejected as exc:
            out.append(exc)
    return out


class Service:
    """One loaded model and the machinery around it; ``predict`` scores (N, S, S, 3) uint8 batches."""

    def __init__(self, settings: Settings, predict, pre: Preprocess, model_id: str, info: dict):
        self.settings = settings
        self.pre = pre.with_threshold(settings.threshold)
        self.model_id = model_id
        self.info = info   # arch, name, parameters, report
        self.gate = Gate(settings.max_concurrent)
        self.batcher = MicroBatcher(predict, settings.max_batch, settings.max_wait_ms / 1000)
        self.decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")

    async def read_uploads(self, request: Request, max_images: int) -> list[tuple[str | None, bytes]]:
        """(filename, bytes) of each image in the request: the ``files`` file parts of a multipart body, or one
        raw body (``image_body`` is this as the contract)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            async with request.form(max_files=max_images) as form:
                uploads = [(part.filename[:255] if part.filename else None, await part.read())
                           for part in form.getlist(FILES_FIELD) if isinstance(part, UploadFile)]
        elif kind.startswith("image/"):
            body = await request.body()
            uploads = [(None, body)] if body else []
        else:
            raise HTTPException(415, f"send multipart/form-data file parts or an image/* body, not "
                                     f"{kind or 'no content type'}; URLs are never fetched")
        if not uploads:
            raise HTTPException(400, f"no image in the request: send file parts named {FILES_FIELD} or one "
                                     f"image/* body")
        return uploads

    async def prepare(self, uploads) -> list:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decoder, prepare_all, uploads, self.pre, self.settings.max_pixels)

    def result(self, index: int, filename, item, probability=None, batch=None) -> ImageResult:
        common = {"index": index, "filename": filename, "threshold": self.pre.threshold, "model_id": self.model_id}
        if isinstance(item, Rejected):
            return ImageResult(**common, ok=False, meme_probability=None, label=None, preprocessing=None, timing=None,
                               error=ImageError(reason=item.reason, meaning=MEANINGS.get(item.reason, ""),
                                                detail=item.detail))
        return ImageResult(**common, ok=True, meme_probability=probability, label=self.pre.label(probability),
                           preprocessing=item.preprocessing, error=None,
                           timing=Timing(decode_ms=round(item.decode_ms, 3), queued_ms=round(batch.queued_ms, 3),
                                         model_ms=round(batch.model_ms, 3), batch_images=batch.batch_images))

    async def predict(self, uploads) -> PredictResponse:
        start = time.perf_counter()
        items = await self.prepare(uploads)
        good = [i for i, item in enumerate(items) if isinstance(item, Prepared)]
        probs, batch = {}, None
        if good:
            batch = await self.batcher.submit(np.stack([items[i].pixels for i in good]))
            probs = dict(zip(good, batch.probabilities.tolist()))
        results = [self.result(i, name, item, probs.get(i), batch) for i, ((name, _), item) in
                   enumerate(zip(uploads, items))]
        return PredictResponse(model_id=self.model_id, count=len(results), failed=len(results) - len(good),
                               results=results, total_ms=round((time.perf_counter() - start) * 1000, 3))

    async def explain(self, uploads) -> ExplainResponse:
        start = time.perf_counter()
        (item,) = await self.prepare(uploads)
        name, heatmap = uploads[0][0], None
        if isinstance(item, Prepared):
            grid = self.settings.occlusion_grid
            batch = await self.batcher.submit(occlusion_batch(item.pixels, grid, GREY))
            probability, grid_drops = drops(batch.probabilities, grid)
            result = self.result(0, name, item, probability, batch)
            heatmap = Heatmap(grid=grid, fill=GREY, drops=np.round(grid_drops, 6).tolist(),
                              max_abs_drop=float(np.abs(grid_drops).max()), region=item.preprocessing.region)
        else:
            result = self.result(0, name, item)
        return ExplainResponse(model_id=self.model_id, result=result, heatmap=heatmap,
                               total_ms=round((time.perf_counter() - start) * 1000, 3))

    async def answer(self, request: Request, max_images: int, work):
        """Read the request's images, then take a slot (503 at once if none is free), then ``work(uploads)``
        within --timeout-s (504). The slot comes after the body: a slow upload never holds one."""
        uploads = await self.read_uploads(request, max_images)
        if not self.gate.try_enter():
            raise HTTPException(503, f"busy: {self.gate.capacity} requests in progress; try again shortly",
                                headers={"Retry-After": "1"})
        try:
            return await asyncio.wait_for(work(uploads), self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"the request took longer than {self.settings.timeout_s:g} s") from None
        finally:
            self.gate.leave()

    def model_info(self) -> ModelInfo:
        s, pre = self.settings, self.pre
        return ModelInfo(model_id=self.model_id, arch=self.info["arch"], name=self.info["name"],
                         parameters=self.info["parameters"], threshold=pre.threshold, report=self.info["report"],
                         input=InputContract(fit=pre.fit, size=pre.size, shape=[None, pre.size, pre.size, 3],
                                             dtype="uint8", color="RGB", label_names=list(LABEL_NAMES)),
                         limits=Limits(**{f: getattr(s, f) for f in Limits.model_fields}))


def load_service(model: str | Path, settings: Settings) -> Service:
    """Load the model (a run folder or a .keras file) once, warm it up, and wrap it."""
    model_path, _ = check_model(model)
    keras_model, pre = load_classifier(model_path)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(keras_model.predict_on_batch(x))[:, 1]

    for n in sorted({1, settings.max_batch}):   # trace the model for the smallest and largest batch now, not on requests
        predict(np.zeros((n, pre.size, pre.size, 3), np.uint8))
    info = {"arch": pre.arch, "name": keras_model.name, "parameters": int(keras_model.count_params()),
            "report": report_headline(model_path.parent)}
    return Service(settings, predict, pre, file_digest(model_path), info)


# ---- the web app --------------------------------------------------------------------------------------------------

DESCRIPTION = ("Meme probability, label and an occlusion heat map for pictures. Send images as multipart/form-data "
               "file parts or as one raw image/* body; see GET /v1/model for the model and the limits.")
PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                "base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def get_service(request: Request) -> Service:
    return request.app.state.service


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()
            service.decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="meme-recognition", version=service.model_id[:12], description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)   # the docs pages load scripts from a CDN
    app.state.service = service
    limits = service.settings
    app.add_middleware(BodyGuard, max_bytes=limits.max_request_bytes, timeout_s=limits.body_timeout_s,
                       min_rate=limits.body_min_rate)
    app.add_middleware(RequestLog)   # added last: outermost, so it also logs the 413s
    app.mount("/static", StaticFiles(packages=[("service", "static")]), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers=PAGE_HEADERS)

    @app.get("/healthz", response_model=Health)
    async def healthz(service: Service = Depends(get_service)) -> Health:
        return Health(status="ok", model_id=service.model_id, in_flight=service.gate.in_use,
                      capacity=service.gate.capacity, model_calls=service.batcher.calls)

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info(service: Service = Depends(get_service)) -> ModelInfo:
        return service.model_info()

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS,
              openapi_extra=image_body(limits.max_images))
    async def predict(request: Request, service: Service = Depends(get_service)) -> PredictResponse:
        """Meme probability and label for each image; unreadable images get an error with a reason."""
        return await service.answer(request, service.settings.max_images, service.predict)

    @app.post("/v1/explain", response_model=ExplainResponse, responses=ERRORS,
              openapi_extra=image_body(1))
    async def explain(request: Request, service: Service = Depends(get_service)) -> ExplainResponse:
        """One image's prediction and its occlusion heat map (grid x grid patches painted grey in turn)."""
        return await service.answer(request, 1, service.explain)

    return app


def app_from_env() -> FastAPI:
    """The app factory each ``--workers`` process calls: model and settings from ``MEME_SERVE_SETTINGS``."""
    config = json.loads(os.environ[SETTINGS_ENV])
    configure_logging()
    return create_app(load_service(config.pop("model"), Settings(**config)))


def configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_listen(host: str, port: int) -> None:
    """UsageError, one line, unless ``host`` resolves and ``port`` on it can be bound right now.

    Tried (and released) before the slow model load, so a busy port or a bad
    --host is not a screen of uvicorn log after it. uvicorn binds with
    SO_REUSEADDR, so this does too (a port in TIME_WAIT is free to both).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {host!r} is not an address of this machine ({exc}): give one such as "
                         f"127.0.0.1") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use: pick another with --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host!r} is not an address of this machine: give one such as "
                                 f"127.0.0.1") from None
            if exc.errno == errno.EACCES:
                raise UsageError(f"port {port} on {host} needs privileges: pick one above 1023 with --port") from None
            raise UsageError(f"cannot listen on {host} port {port} ({exc.strerror or exc}): give another --host "
                             f"or --port") from None


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m service", description=__doc__)
    p.add_argument("model", help="run folder (with model.keras) or a .keras file")
    for f in fields(Settings):
        kind = float if f.name == "threshold" else type(f.default)
        suffix = "" if f.default is None else f" (default: {f.default})"
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=HELP[f.name] + suffix,
                       metavar={str: "ADDR", int: "N", float: "X"}[kind])
    args = p.parse_args(argv)
    return args.model, Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})


def uvicorn_options(settings: Settings) -> dict:
    """How ``main`` runs uvicorn (the tests run the app the same way). No WebSockets: the app has no such route,
    and an upgraded connection would leave ``GuardedH11Protocol``."""
    return {"host": settings.host, "port": settings.port, "access_log": False, "log_level": "info",
            "timeout_keep_alive": 5, "ws": "none", "http": partial(GuardedH11Protocol, max_connections=settings.max_connections,
                                    header_timeout_s=settings.header_timeout_s)}


def main(argv=None) -> int:
    model, settings = parse_args(argv)
    check_settings(settings)
    check_model(model)   # the model path and preprocess.json, then the address: both before the slow load
    check_listen(settings.host, settings.port)
    configure_logging()
    if not is_loopback(settings.host):
        log.warning("listening on %s: reachable from other machines (the default is 127.0.0.1)", settings.host)
    run = uvicorn_options(settings)
    if settings.workers == 1:
        service = load_service(model, settings)
        log.info("model %s (id %s); page http://%s:%d/", model, service.model_id[:12], settings.host, settings.port)
        uvicorn.run(create_app(service), **run)
    else:
        load_classifier(model)   # a bad MODEL is one clear line here, not a crash in every worker
        os.environ[SETTINGS_ENV] = json.dumps({"model": str(model), **asdict(settings)})
        uvicorn.run("service.app:app_from_env", factory=True, workers=settings.workers, **run)
    return 0
