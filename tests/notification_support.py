"""What the notification tests share: a test-only run event source, a real webhook
receiver, a real SMTP server and a synchronous driver of the real notifier.

The run events of the job-runs context do not exist on this branch yet, so the tests
declare a small aggregate of their own (`SampleRun`) whose `Finished` event is mapped
through the real registry (`NOTIFICATION_SOURCES`) exactly as the runs context will map
its events, and whose module is put on the `sailplane.job-runs` topic for the test.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from sailplane.commands.base import SailplaneApplication
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.ids import new_id
from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Lookup, Notable
from sailplane.infra_adapters.consumers import ConsumerWorker, LogEventSource
from sailplane.infra_adapters.mail import SmtpMailer
from sailplane.infra_adapters.notifier import Notifier
from sailplane.infra_adapters.webhooks import Backoff
from sailplane.projections import event_log
from sailplane.system import System
from tests.e2e.identity.conftest import Mailbox
from tests.services import free_port

# --- a test-only source of run events --------------------------------------------------------


class SampleRun(SailplaneAggregate):
    class Created(SailplaneAggregate.Created):
        job_id: str

        def apply(self, aggregate: SampleRun) -> None:
            super().apply(aggregate)
            aggregate.job_id = self.job_id

    class Finished(SailplaneAggregate.Event):
        status: str
        job_id: str
        team_ids: list[str]
        member_id: str | None

        def apply(self, aggregate: SampleRun) -> None:
            aggregate.status = self.status


class SampleRuns(SailplaneApplication):
    def finish(
        self,
        status: str,
        *,
        by: Actor,
        job_id: str = "JOB0000001",
        team_ids: tuple[str, ...] = (),
        member_id: str | None = None,
    ) -> str:
        run = SampleRun._create_as(id=new_id(), by=by, at=self.clock(), job_id=job_id)
        run._trigger(
            SampleRun.Finished,
            by=by,
            at=self.clock(),
            status=status,
            job_id=job_id,
            team_ids=list(team_ids),
            member_id=member_id,
        )
        self._commit(run)
        return run.id


def sample_run_finished(event: SampleRun.Finished, lookup: Lookup) -> Notable | None:
    if event.status == "running":
        return None
    run = lookup(event.originator_id, event.originator_version)
    return Notable(
        event_type=f"job_run.{event.status}",
        resource_type="job_run",
        resource_id=event.originator_id,
        related_ids=(run.job_id,),
        team_ids=tuple(event.team_ids),
        member_id=event.member_id,
        subject=f"Run {event.originator_id} {event.status}",
        payload={"jobId": event.job_id, "status": event.status},
    )


@pytest.fixture
def runs(system: System, monkeypatch: pytest.MonkeyPatch) -> Iterator[SampleRuns]:
    """The sample run source, registered as the runs context will register its own."""
    monkeypatch.setitem(event_log.CONTEXTS, __name__, "runs")
    NOTIFICATION_SOURCES.register(SampleRun.Finished, sample_run_finished)
    try:
        yield SampleRuns(system.event_log)
    finally:
        NOTIFICATION_SOURCES.unregister(SampleRun.Finished)


# --- a real webhook receiver -----------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTP server on a free port answering with the scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sailplane"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@contextlib.contextmanager
def webhook_receiver(
    statuses: list[int] | None = None, port: int | None = None
) -> Iterator[Receiver]:
    receiver = Receiver(statuses=list(statuses or []), port=port or free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(({k: v for k, v in self.headers.items()}, body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def smtp(system: System) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free port, wired as the system's mailer."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    previous = system.email.mailer
    system.email.mailer = SmtpMailer("127.0.0.1", controller.port, "sailplane@example.com")
    try:
        yield mailbox
    finally:
        system.email.mailer = previous
        controller.stop()


# --- the real notifier, driven step by step --------------------------------------------------


@dataclass
class MovableClock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class NotifierDriver:
    """The notifier over the log, run one step at a time on a movable clock."""

    system: System
    clock: MovableClock
    waits: list[float]  # seconds the clock was moved to reach each scheduled retry
    notifier: Notifier
    source: LogEventSource
    worker: ConsumerWorker

    def pump(self) -> None:
        """Process every event in the log so far, then the due deliveries (digests, replays)."""
        last = self.system.event_log.recorder.max_notification_id() or 0
        while self.source._position < last:
            for delivery in self.source.poll(timeout=0.0):
                self.worker.process(delivery)
        self.notifier.tick()
        # The notifier's own writes (delivered, failed) in the views, for the HTTP reads.
        self.system.wait_for_views(self.system.event_log.recorder.max_notification_id() or 0)

    def next_retry_at(self) -> datetime | None:
        row = self.system.notifications.view.fetch_one(
            "SELECT min(next_attempt_at) AS at FROM {notification_deliveries} "
            "WHERE status = 'delivering'"
        )
        return row["at"] if row else None

    def pump_retries(self, limit: int = 20) -> None:
        """Move the clock to each scheduled retry and pump, until none is left."""
        for _ in range(limit):
            at = self.next_retry_at()
            if at is None:
                return
            self.waits.append((at - self.clock.now).total_seconds())
            self.clock.now = max(self.clock.now, at)
            self.pump()
        raise AssertionError("retries still scheduled after the limit")


@pytest.fixture
def notifier(system: System) -> NotifierDriver:
    clock = MovableClock()
    notifier = Notifier(
        system.notifications, clock=clock, rng=lambda: 0.5, backoff=Backoff(max_attempts=4)
    )
    source = LogEventSource(
        system.event_log,
        consumer=notifier.name,
        kafka_topics=notifier.kafka_topics,
        new_events=system.new_events,
    )
    return NotifierDriver(
        system, clock, [], notifier, source, ConsumerWorker(notifier, source, system.event_log)
    )
