"""`GET /metrics` (Prometheus text format) and the request middleware that feeds it.

The middleware gives every request an id (a sane incoming `X-Request-Id`, else a new one),
sends it back as `X-Request-Id`, puts it on every log line written while serving, counts
the request by route template and status, times it, and logs one line for it (the access
log: the path without its query, secrets in it redacted by `access_log.redact_url`). Requests
that match no route (404 before any handler) are answered by the framework alone and are
not counted.

Measured at scrape time from the database: how far each view and each consumer is behind
the log's head, runs by status, and the dispatch queue (runs `ready` and not yet
dispatched). A consumer's lag counts every event after the last one it processed, those
of topics it ignores included, so it is an upper bound that reaches 0 only when the
consumer's last processed event is the head. `/metrics` needs no token: it shows counts
only, no names, ids or contents.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

from litestar import Response
from litestar._asgi.utils import wrap_in_exception_handler
from litestar.middleware.base import MiddlewareProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from sailplane.http.access_log import redact_url
from sailplane.http.routes import get
from sailplane.observability import request_id
from sailplane.projections.runs import RunsView
from sailplane.storage import POSITIONS_TABLE, EventLog
from sailplane.system import PROJECTIONS

log = logging.getLogger("sailplane.http")
REQUEST_ID_HEADER = "x-request-id"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Metrics:
    """One registry per app: request counters and latencies, and the system's gauges."""

    def __init__(self, event_log: EventLog, pool: ConnectionPool, runs: RunsView) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sailplane_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sailplane_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            registry=self.registry,
        )
        self.registry.register(DatabaseGauges(event_log, pool, runs))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseGauges(Collector):
    """Gauges read from the database at each scrape: the log's head, how far each view and
    consumer follows it, and the runs by status."""

    def __init__(self, event_log: EventLog, pool: ConnectionPool, runs: RunsView) -> None:
        self.event_log = event_log
        self.pool = pool
        self.runs = runs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        head = self.event_log.head()
        yield GaugeMetricFamily("sailplane_event_log_head", "Position of the newest event.", head)
        with self.pool.connection(timeout=5.0) as conn:
            rows = conn.execute(
                f"SELECT name, position FROM {POSITIONS_TABLE} UNION ALL "
                f"SELECT application_name, max(notification_id) FROM {EventLog.INBOX_TABLE} "
                "GROUP BY application_name"
            ).fetchall()
        view_names = {p.view_class.name for p in PROJECTIONS}
        lag = GaugeMetricFamily(
            "sailplane_projection_lag_events",
            "Events a view has still to process.",
            labels=["view"],
        )
        consumer_lag = GaugeMetricFamily(
            "sailplane_consumer_lag_events",
            "Events after the last one the consumer processed (an upper bound).",
            labels=["consumer"],
        )
        # Followers of the log that are not views (the Kafka relay) count as consumers.
        for row in sorted(rows, key=lambda r: r["name"]):
            gauge = lag if row["name"] in view_names else consumer_lag
            gauge.add_metric([row["name"]], max(head - int(row["position"] or 0), 0))
        yield lag
        yield consumer_lag
        counts = self.runs.counts_by_status()
        runs = GaugeMetricFamily("sailplane_runs", "Job runs by status.", labels=["status"])
        for status in sorted(counts):
            runs.add_metric([status], counts[status])
        yield runs
        queue = GaugeMetricFamily(
            "sailplane_queue_depth", "Work waiting to be picked up.", labels=["queue"]
        )
        queue.add_metric(["dispatch"], counts.get("ready", 0))
        yield queue


class RequestMiddleware(MiddlewareProtocol):
    """Request id, metrics and one log line per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        # Errors raised by the middleware inside (401s from auth) become responses here,
        # so they too are counted and carry the request id.
        self.app = wrap_in_exception_handler(app=app)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        # A new id is 32 random hex digits (as uuid4().hex, without building a UUID).
        rid = incoming if incoming and SANE_REQUEST_ID.match(incoming) else os.urandom(16).hex()
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - started
            method = scope.get("method", "")
            route = scope.get("path_template") or "unmatched"
            path = redact_url(scope.get("path", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(took)
            log.info(
                "%s %s %s %.1fms",
                method,
                path,
                status,
                took * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "duration_ms": round(took * 1000, 1),
                },
            )
            request_id.reset(token)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return value.decode("latin-1")
    return None


def metrics_endpoint(metrics: Metrics) -> Any:
    @get(
        "/metrics",
        operation_id="Metrics",
        opt={"exclude_from_auth": True},
        security=[],
        include_in_schema=False,
    )
    def serve_metrics() -> Response[bytes]:
        """The Prometheus text exposition of this process's metrics."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return serve_metrics
