"""The service's connections, bounded before and around the app: ASGI middleware for a request's body
(``BodyGuard``: size and deadline) and its log line (``RequestLog``), and uvicorn's h11 protocol with a
header deadline and a cap on open connections (``GuardedH11Protocol``), which no middleware can do since
the app sees a request only once its headers are in. The limits come from ``service.app.Settings``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from http import HTTPStatus

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("service")

CLOSE = {"Connection": "close"}   # on an answer given before the body is in: the rest of it is not waited for


class BodyGuard:
    """ASGI middleware, the bounds of a request body: 413 when it is over ``max_bytes`` (by its Content-Length or
    while it streams in); 408 when it is not in within ``timeout_s`` plus one second per ``min_rate`` bytes
    received, so a slow upload holds its connection only for a while (and never a model slot: see
    ``Service.answer``). Both answers close the connection. Only ASGI's receive, so any server runs it."""

    def __init__(self, app, max_bytes: int, timeout_s: float, min_rate: int):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.min_rate = min_rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = f"request body over {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": too_big}, 413, CLOSE)(scope, receive, send)
        loop = asyncio.get_running_loop()
        start, received, more = loop.time(), 0, True

        async def guarded():
            nonlocal received, more
            if not more:                      # the body is in: later receives wait for a disconnect, unbounded
                return await receive()
            deadline = start + self.timeout_s + received / self.min_rate
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"request body not in after {loop.time() - start:.1f} s ({received} "
                                         f"bytes): send it at {self.min_rate} bytes/s or faster", CLOSE) from None
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
            if received > self.max_bytes:
                raise HTTPException(413, too_big, CLOSE)
            return message

        await self.app(scope, guarded, send)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the two bounds that must act before the app sees a request, so no ASGI
    middleware can: at most ``max_connections`` open connections (one more is answered 503 and closed at
    once), and a request's line and headers must be in within ``header_timeout_s`` of the connection or
    of the previous response (else 408 and closed), so a client that sends part of a request and then nothing
    does not hold a connection forever. uvicorn has neither (its keep-alive timer restarts on every byte)."""

    LINGER_S = 1.0   # how long a refused connection's further bytes are read and dropped before it is closed

    def __init__(self, *args, max_connections: int, header_timeout_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections, self.header_timeout_s = max_connections, header_timeout_s
        self.header_deadline: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.refuse(503, f"{self.max_connections} connections open; try again shortly")
        else:
            self.await_headers()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:           # a new request's headers are in: the app has it now
            self.stop_waiting()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        self.await_headers()                  # the next request's headers are due from now
        super().on_response_complete()
        if self.cycle is not cycle:           # it was already here (pipelined)
            self.stop_waiting()

    def connection_lost(self, exc) -> None:
        self.stop_waiting()
        super().connection_lost(exc)

    def await_headers(self) -> None:
        self.stop_waiting()
        self.header_deadline = self.loop.call_later(
            self.header_timeout_s, self.refuse, 408,
            f"request line and headers not in within {self.header_timeout_s:g} s")

    def stop_waiting(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` outside any request (none is complete) and close the connection: our side at once,
        the whole of it when the client closes or after ``LINGER_S``, its bytes dropped meanwhile (a socket
        closed with bytes unread is reset, and the client could lose the answer)."""
        self.header_deadline = None
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": detail}).encode()
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n")
        retry = "retry-after: 1\r\n" if status == 503 else ""
        self.transport.write((head + retry + "\r\n").encode() + body)
        self.refused = True
        self.transport.write_eof()
        self.loop.call_later(self.LINGER_S, self.transport.close)
        log.info('%s "- -" %d %s; connection closed', (self.client or ("-",))[0], status, detail)


class RequestLog:
    """ASGI middleware: one line per request (client, method, path, status, time, body size); never its contents."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client") or ("-", 0)
            size = dict(scope["headers"]).get(b"content-length", b"-").decode("latin-1")
            log.info('%s "%s %s" %d %.1fms in=%s', client[0], scope["method"], scope["path"], status,
                     (time.perf_counter() - start) * 1000, size)
