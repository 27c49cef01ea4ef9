"""ASGI middleware of the schedule service: request-body limits, load shedding and request metrics.

:class:`BodyLimit` refuses oversized bodies before they are parsed; :class:`RequestGate` answers
503 + ``Retry-After`` when more than ``max_in_flight`` requests are being answered (so overload
sheds load instead of queueing without bound) and records every request's endpoint, status and
latency in :class:`zoo.metrics.ServiceMetrics`.
"""
from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoo.metrics import ServiceMetrics

#: Request bodies above this many bytes are refused (413) before they are parsed. The largest
#: legitimate body (a task with probe scores of MAX_LIST_ITEMS models and as many ids in ``models``,
#: 64-character ids) is about 40 KB; 64 KiB leaves room and keeps a request's memory small.
#: ``automl serve --max-body-bytes`` changes it.
DEFAULT_MAX_BODY_BYTES: int = 64 * 1024
#: Requests one process answers at once before it sheds load (``automl serve --max-in-flight``).
DEFAULT_MAX_IN_FLIGHT: int = 256
#: Paths never shed (probes and monitoring must answer under overload).
UNSHED_PATHS: frozenset[str] = frozenset({"/health", "/ready", "/metrics"})


class RequestGate:
    """ASGI middleware: sheds load above ``max_in_flight`` concurrent requests (503, ``Retry-After: 1``)
    and records each request's endpoint (route template), status and latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # one event loop per process: plain arithmetic is safe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.in_flight >= self.max_in_flight and path not in UNSHED_PATHS:
            self.metrics.shed.inc()
            self.metrics.requests.labels("shed", scope.get("method", ""), "503").inc()
            await _refuse(send, 503, f"the service is answering {self.in_flight} requests, its limit; retry in a "
                                     f"second", headers=[(b"retry-after", b"1")])
            return
        status = [500]

        async def recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.in_flight += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recorded)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"  # the template: bounded label values
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status[0])).inc()


class BodyLimit:
    """ASGI middleware: HTTP request bodies above ``max_body_bytes`` are answered with 413 before the app
    (and its JSON parser) sees a byte of them.

    A declared ``Content-Length`` above the limit is refused at once (a malformed one is a 400); a body
    without one (chunked) is read and counted chunk by chunk, refused as soon as the count passes the
    limit, and otherwise handed to the app as it came. Memory per request is thus at most the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0 or len(set(declared)) > 1:
                    raise ValueError
            except ValueError:
                await _refuse(send, 400, f"the Content-Length header {declared[0][:40]!r} is not one "
                                         "non-negative integer")
                return
            if length > self.max_body_bytes:
                await _refuse(send, 413, f"the request body of {length} bytes exceeds the limit of "
                                         f"{self.max_body_bytes} bytes", max_body_bytes=self.max_body_bytes)
                return
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while first is None:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see that
                first = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, f"the request body exceeds the limit of {self.max_body_bytes} bytes "
                                         f"(more than {size - len(chunk)} bytes were already received)",
                              max_body_bytes=self.max_body_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed and first is not None:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None,
                  **extra: Any) -> None:
    body = json.dumps({"error": error, **extra}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
