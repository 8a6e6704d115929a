"""The bounded contexts as the composition root (`sailplane/system.py`) builds them.

One object per context holds its use cases (`commands`), the views its handlers and
workers read, and what else its handlers read (typed here by what they use, so no
adapter's module is named). `System.__init__` builds each one from
settings, passing every part what it needs through its constructor; nothing is wired
afterwards. HTTP handlers declare the contexts they use as Litestar dependencies
(`runs: RunsDep` in `http/auth.py`), workers take theirs in their constructors.

Every context also carries the clock and the read-your-writes wait, so a handler needs
nothing else to write, wait for its write and read the views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sailplane.commands.authentication import Authentication
from sailplane.commands.base import Clock
from sailplane.commands.identity import Identity
from sailplane.commands.infra import Infra
from sailplane.commands.notifications import Notifications
from sailplane.commands.ports import ChannelProbe, Mail, Providers
from sailplane.commands.runs import Runs
from sailplane.commands.sessions import Sessions
from sailplane.commands.sso import IdentityProviders
from sailplane.commands.workloads import Workloads
from sailplane.domain.errors import ViewsBehindError
from sailplane.domain.runtime import RuntimeSettings, RunTokens
from sailplane.projections.access import AccessView
from sailplane.projections.identity import DirectoryView, TeamsView
from sailplane.projections.infra import ClustersView
from sailplane.projections.jobs import JobsView
from sailplane.projections.notifications import NotificationsView
from sailplane.projections.runner import Positions
from sailplane.projections.runs import RunsView
from sailplane.projections.schedules import SchedulesView
from sailplane.projections.sessions import SessionsView
from sailplane.projections.workloads import CatalogsView, QueriesView

VIEWS_BEHIND_RETRY_AFTER = 2  # seconds a client waits before it reads or retries again


class ReadYourWrites:
    """Waits (bounded) until every view has processed a log position."""

    def __init__(self, positions: Positions, timeout: float) -> None:
        self.positions = positions
        self.timeout = timeout  # seconds

    def views_reached(self, position: int) -> bool:
        """Block until every view has processed `position`; say whether they did.

        For workers, which go on either way and meet the change on a later event.
        """
        return self.positions.wait_for(position, timeout=self.timeout)

    def wait_for_views(self, position: int) -> None:
        """Read-your-writes for a request: its answer reads views that hold its change.

        Raises `ViewsBehindError` (503 with `Retry-After`) when they do not within the
        timeout, rather than answering from views that miss the change (a 404 for what
        was just created).
        """
        if not self.views_reached(position):
            raise ViewsBehindError(
                "The change was saved, but the views that answer this request have not caught "
                "up with it yet; read it again (or retry) shortly.",
                retry_after=VIEWS_BEHIND_RETRY_AFTER,
            )


@dataclass(frozen=True, kw_only=True)
class Context:
    clock: Clock
    reads: ReadYourWrites

    def wait_for_views(self, position: int) -> None:
        self.reads.wait_for_views(position)

    def views_reached(self, position: int) -> bool:
        return self.reads.views_reached(position)


@dataclass(frozen=True, kw_only=True)
class IdentityContext(Context):
    """Organizations, users, members, teams, access, sign-in and identity providers."""

    commands: Identity
    authentication: Authentication
    identity_providers: IdentityProviders
    directory: DirectoryView
    teams: TeamsView
    access: AccessView
    # The public URL that links and the single sign-on callback use (else the request's own
    # base URL).
    public_url: str | None


@dataclass(frozen=True, kw_only=True)
class InfraContext(Context):
    """Connections, networks, clusters and their operations; sessions on the clusters."""

    commands: Infra
    sessions: Sessions
    providers: Providers
    clusters: ClustersView
    session_views: SessionsView


@dataclass(frozen=True, kw_only=True)
class WorkloadsContext(Context):
    """Catalogs, saved queries, jobs with their versions and schedules."""

    commands: Workloads
    catalogs: CatalogsView
    queries: QueriesView
    jobs: JobsView
    schedules: SchedulesView


class RunLogLines(Protocol):
    """The lines runs wrote, kept outside the event log (the executors write them)."""

    def page(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """A run's lines after `seq` `after`, in order."""
        ...

    def window(
        self,
        run_ids: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        limit: int,
        contains: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest `limit` lines of these runs written in [start, end), oldest first."""
        ...

    def delete(self, run_id: str) -> None: ...


class RunUsageSamples(Protocol):
    """CPU and memory samples of executing runs, kept outside the event log."""

    def series(
        self,
        names: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        step_seconds: int,
        job_id: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """One entry per name asked, in that order: `{name, status, unit, points, error}`."""
        ...

    def delete(self, *, run_id: str | None = None, job_id: str | None = None) -> None: ...


class RunReports(Protocol):
    """What the work of runs reported through the run runtime, kept outside the event log
    (`infra_adapters/run_telemetry.py`): items of a kind (event, usage, tool_call, output,
    checkpoint, chunk) numbered by `seq`, key/value state, heartbeats."""

    def append(
        self,
        run_id: str,
        attempt: int,
        items: Sequence[tuple[str, Any]],
        state: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Store items in order and set state keys, at once; the items' `seq`s."""
        ...

    def heartbeat(self, run_id: str, attempt: int) -> None: ...

    def rows(
        self, run_id: str, kind: str, *, after: int = 0, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """The run's items of `kind` after `seq` `after`: seq, attempt, at, body, sequence."""
        ...

    def last(self, run_id: str, kind: str) -> dict[str, Any] | None: ...

    def state(self, run_id: str, key: str | None = None) -> list[dict[str, Any]]: ...

    def usage_totals(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]: ...

    def heartbeats(self, run_ids: Sequence[str]) -> dict[str, datetime]:
        """The last heartbeat of each run's newest attempt that sent one."""
        ...

    def delete(self, run_id: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class RunsContext(Context):
    """Job runs: one aggregate and one view under every API dialect."""

    commands: Runs
    view: RunsView
    logs: RunLogLines
    metrics: RunUsageSamples
    telemetry: RunReports  # what the work reports through `sailplane.runtime`
    tokens: RunTokens  # the run tokens the work talks back with
    runtime: RuntimeSettings

    def wait_for_created(self, position: int) -> None:
        """Read-your-writes after a create: its own change, or, when it created nothing
        (its idempotency key names a run made before, perhaps by a request racing it),
        the log as it stands now, which holds that run."""
        self.wait_for_views(position or self.commands.event_log.head())

    def forget_outputs(self, run_id: str) -> None:
        """A deleted run's logs, samples and telemetry go with it (they live outside the
        event log)."""
        self.logs.delete(run_id)
        self.metrics.delete(run_id=run_id)
        self.telemetry.delete(run_id)


@dataclass(frozen=True, kw_only=True)
class NotificationsContext(Context):
    """Channels, rules, notification events and their deliveries."""

    commands: Notifications
    view: NotificationsView
    mail: Mail  # email channels (webhooks go out through the notifier's sender)
    sender: ChannelProbe  # sends a channel's test message now
