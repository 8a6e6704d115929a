"""`sailplane worker provisioner`: performs infrastructure operations and opens sessions.

It follows the `sailplane.infra` topic (or the log in the single-process mode). For each
new `Operation` it marks the operation running, calls the provider adapter's step
(provision, update, destroy or template sync), records each progress report as an event,
and saves the outcome on the operation and its resource together with its inbox row.

Idempotent end to end: a redelivered message whose operation already finished changes
nothing; a worker that died mid-step finds the operation `running` and calls the step
again, and the adapter's step converges on the one resource named after the ids (the
operation id is the client token). One worker performs an operation at a time: it holds
a PostgreSQL advisory lock named after the operation for the whole step (released when
its connection closes, also when its process dies), so a message redelivered to another
instance waits for it and then finds the operation finished. Steps take up to an hour
(AWS): the provisioner's Kafka consumer takes one message per poll and is kept in its
group for `max_handle_seconds`, so a long step does not hand its message to another
instance. For each new `Session` it brings up the session's
Spark Connect endpoint on its cluster and marks the session active (or failed). For each
new organization (topic `sailplane.identity`) it creates the built-in `local` cluster, and
when a cluster starts being destroyed it closes the sessions still open on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from sailplane.commands.infra import Infra
from sailplane.commands.ports import (
    ClusterSpec,
    ConnectionSpec,
    NetworkSpec,
    Provider,
    ProviderError,
    Providers,
)
from sailplane.commands.sessions import Sessions
from sailplane.domain.base import Actor
from sailplane.domain.errors import DomainError, NotFoundError
from sailplane.domain.identity import Organization
from sailplane.domain.infra import Cluster, Operation
from sailplane.domain.sessions import Session
from sailplane.infra_adapters.consumers import Consumer, Delivery
from sailplane.projections.runner import advisory_key
from sailplane.storage import discarded_on_error

log = logging.getLogger(__name__)


GONE = ("destroying", "destroyed")


class OpenSessions(Protocol):
    def open_session_ids(self, organization_id: str, cluster_id: str) -> list[str]: ...


class Provisioner(Consumer):
    name = "provisioner"
    kafka_topics = ("sailplane.infra", "sailplane.identity")
    max_handle_seconds = 2 * 3600.0  # an AWS step takes up to an hour

    def __init__(
        self,
        infra: Infra,
        sessions: Sessions,
        providers: Providers,
        open_sessions: OpenSessions,
        wait_for_views: Callable[[int], bool],
        pool: ConnectionPool,
    ) -> None:
        self.infra = infra
        self.sessions = sessions
        self.providers = providers
        self.open_sessions = open_sessions
        self.wait_for_views = wait_for_views
        self.pool = pool  # for the operations' locks

    @contextlib.contextmanager
    def performing(self, operation_id: str) -> Iterator[None]:
        """Hold the operation's lock (waiting while another worker performs it)."""
        key = advisory_key("operation:" + operation_id)
        # A pooled connection, not a new one per operation; one whose use failed is closed
        # (which releases the lock too) rather than returned.
        with discarded_on_error(self.pool.connection()) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def handle(self, delivery: Delivery) -> None:
        event = delivery.event
        if isinstance(event, Operation.Created):
            self.perform(event.originator_id, delivery)
        elif isinstance(event, Organization.Created):
            # Every organization gets its built-in local cluster, however it was founded.
            self.infra.ensure_local_cluster_of_founded(
                event.originator_id, tracking=delivery.tracking(self.name)
            )
        elif isinstance(event, Cluster.ExternalStatusMirrored) and event.external_status in GONE:
            # Sessions end with their cluster; the view shows every session created before.
            self.wait_for_views(delivery.position)
            self.sessions.end_sessions(
                self.open_sessions.open_session_ids(event.organization_id, event.originator_id),
                reason="cluster_destroyed",
                by=Actor.system(self.name, event.organization_id),
                tracking=delivery.tracking(self.name),
            )
        elif isinstance(event, Session.Created):
            self.sessions.open_session(
                event.originator_id,
                by=Actor.system(self.name, event.organization_id),
                tracking=delivery.tracking(self.name),
            )

    def perform(self, operation_id: str, delivery: Delivery) -> None:
        with self.performing(operation_id):
            self._perform(operation_id, delivery)

    def _perform(self, operation_id: str, delivery: Delivery) -> None:
        try:
            operation, connection, target = self.infra.operation_target(operation_id)
        except NotFoundError:
            # Not in this installation's store (a broker shared with another one): not ours.
            log.warning("operation %s is not in the event store; skipped", operation_id)
            return
        if operation.finished:
            return
        by = Actor.system(self.name, operation.organization_id)
        self.infra.start_operation(operation_id, by=by)

        def progress(stage: str, message: str, resources: list[dict[str, Any]]) -> None:
            self.infra.record_progress(operation_id, stage, message, resources, by=by)

        outputs: dict[str, Any] | None = None
        error: ProviderError | None = None
        try:
            adapter = self.providers.get(connection.provider)
            outputs = run_step(
                adapter, operation, connection, target, token=operation_id, progress=progress
            )
        except ProviderError as exc:
            error = exc
        except DomainError as exc:
            error = ProviderError(exc.message, code=exc.code, retryable=False)
        except (
            Exception
        ) as exc:  # a provider's unexpected failure fails the operation, with its text
            log.exception(
                "operation %s failed in the %s provider", operation_id, connection.provider
            )
            error = ProviderError(f"{type(exc).__name__}: {exc}", code="provider_error")
        self.infra.finish_operation(
            operation_id, outputs=outputs, error=error, by=by, tracking=delivery.tracking(self.name)
        )


def run_step(
    adapter: Provider,
    operation: Operation,
    connection: ConnectionSpec,
    target: NetworkSpec | ClusterSpec | None,
    *,
    token: str,
    progress: Any,
) -> dict[str, Any] | None:
    """Call the adapter's step for this operation; its outputs (None for a destroy)."""
    kind = operation.operation
    if kind == "sync_template":
        return adapter.sync_template(connection, token=token, progress=progress)
    if isinstance(target, NetworkSpec):
        if kind == "provision_network":
            return adapter.provision_network(connection, target, token=token, progress=progress)
        adapter.destroy_network(connection, target, token=token, progress=progress)
        return None
    assert isinstance(target, ClusterSpec)
    if kind == "provision_cluster":
        return adapter.provision_cluster(connection, target, token=token, progress=progress)
    if kind == "update_cluster":
        return adapter.update_cluster(connection, target, token=token, progress=progress)
    adapter.destroy_cluster(connection, target, token=token, progress=progress)
    return None
