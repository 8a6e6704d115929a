"""The composition root: the one place that wires the log, applications, views and workers.

`serve` and every `worker` build one `System`; tests build one per session. Later
contexts register their projections, start-up hooks and consumers here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sailplane.commands.authentication import Authentication
from sailplane.commands.base import Clock, utc_now
from sailplane.commands.identity import FoundedOrganization, Identity
from sailplane.commands.infra import Infra
from sailplane.commands.notifications import Notifications
from sailplane.commands.ports import Providers
from sailplane.commands.requests import Requests
from sailplane.commands.runs import JobVersions, Runs
from sailplane.commands.sessions import Sessions
from sailplane.commands.sso import IdentityProviders
from sailplane.commands.workloads import SecretBox, Workloads
from sailplane.contexts import (
    IdentityContext,
    InfraContext,
    NotificationsContext,
    ReadYourWrites,
    RunsContext,
    WorkloadsContext,
)
from sailplane.domain.base import Actor
from sailplane.domain.runs import RUNNING
from sailplane.domain.runtime import RuntimeSettings, RunTokens
from sailplane.infra_adapters.catalogs import CatalogBackends
from sailplane.infra_adapters.cloud_providers import (
    AwsAdapter,
    AwsConnectionRoles,
    KubernetesAdapter,
)
from sailplane.infra_adapters.consumers import Consumer, ConsumerWorker, EventSource, LogEventSource
from sailplane.infra_adapters.dispatcher import DispatcherWorker, QueryTexts, RunDispatcher
from sailplane.infra_adapters.executors import RunTargets
from sailplane.infra_adapters.executors.kubernetes import KubernetesExecutor
from sailplane.infra_adapters.executors.local import LocalExecutor
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.infra_adapters.executors.metrics import RunMetrics, RunSampler
from sailplane.infra_adapters.executors.targets import InfraRunTargets
from sailplane.infra_adapters.glue import GlueCatalogs
from sailplane.infra_adapters.isolation import Isolation
from sailplane.infra_adapters.kafka import KafkaEventSource, KafkaRelay, KafkaSettings
from sailplane.infra_adapters.mail import Email, Mailer, SmtpMailer
from sailplane.infra_adapters.notifier import ChannelSender, Notifier
from sailplane.infra_adapters.oidc import OidcClient
from sailplane.infra_adapters.providers.local import LocalProvider, SailServers
from sailplane.infra_adapters.provisioner import Provisioner
from sailplane.infra_adapters.replay_bodies import SealedReplayBodies
from sailplane.infra_adapters.run_telemetry import RunTelemetry
from sailplane.infra_adapters.scheduler import (
    Leadership,
    RunsForScheduler,
    Scheduler,
    SchedulerSettings,
    SchedulerWorker,
    scheduler_settings,
)
from sailplane.infra_adapters.secret_box import FernetSecretBox
from sailplane.infra_adapters.webhooks import WebhookGuard, WebhookSender
from sailplane.notices import ChannelListener
from sailplane.projections.access import AccessProjection, AccessView
from sailplane.projections.base import Projection
from sailplane.projections.identity import (
    DirectoryProjection,
    DirectoryView,
    TeamsProjection,
    TeamsView,
)
from sailplane.projections.infra import ClustersProjection, ClustersView
from sailplane.projections.jobs import JobsProjection, JobsView
from sailplane.projections.notifications import NotificationsProjection, NotificationsView
from sailplane.projections.runner import (
    VIEWS_CHANNEL,
    Positions,
    ProjectionRunner,
    UnknownEvent,
    prepare_view,
)
from sailplane.projections.runs import JobVersionsFromView, RunsProjection, RunsView
from sailplane.projections.schedules import SchedulesProjection, SchedulesView
from sailplane.projections.sessions import SessionsProjection, SessionsView
from sailplane.projections.workloads import (
    CatalogsProjection,
    CatalogsView,
    QueriesProjection,
    QueriesView,
)
from sailplane.settings import Settings
from sailplane.storage import POSITIONS_TABLE, Database, EventLog, WriteTimeouts

log = logging.getLogger(__name__)

PROJECTIONS: tuple[type[Projection[Any]], ...] = (
    DirectoryProjection,
    TeamsProjection,
    CatalogsProjection,
    QueriesProjection,
    AccessProjection,
    ClustersProjection,
    SessionsProjection,
    NotificationsProjection,
    JobsProjection,
    RunsProjection,
    SchedulesProjection,
)


# A readiness check: None when ready, else one line saying what is not.
ReadinessCheck = Callable[[], "str | None"]
# How long the views may stay behind a log position before `/readyz` says not ready.
VIEW_LAG_BOUND = 30.0


class ViewLag:
    """Whether the views reached, within `bound` seconds, every head of the log seen.

    Each check notes the head it saw; a noted head older than the bound that the slowest
    view has not reached means the views are stuck or far behind (another process's
    runner stopped on an unknown event shows up here too)."""

    def __init__(self, bound: float = VIEW_LAG_BOUND, clock: Callable[[], float] = time.monotonic):
        self.bound = bound
        self.clock = clock
        self._heads: deque[tuple[float, int]] = deque(maxlen=1000)

    def check(self, head: int, lowest: int) -> str | None:
        now = self.clock()
        if not self._heads or self._heads[-1][1] < head:
            self._heads.append((now, head))
        while self._heads and self._heads[0][1] <= lowest:
            self._heads.popleft()
        if self._heads and now - self._heads[0][0] > self.bound:
            seen_at, behind = self._heads[0]
            return (
                f"the views stand at {lowest}, still short of position {behind} "
                f"seen {now - seen_at:.0f} s ago (head {head})"
            )
        return None


class Worker(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...


# name -> builder of the consumer; each becomes `sailplane worker <name>`.
CONSUMERS: dict[str, Callable[[System], Consumer]] = {
    "provisioner": lambda system: Provisioner(
        system.infra.commands,
        system.infra.sessions,
        system.infra.providers,
        system.infra.session_views,
        system.infra.views_reached,
        system.pool,
    ),
    "notifier": lambda system: Notifier(system.notifications),
}


class System:
    """The composition root: builds the shared log, views and adapters, then each context
    (identity, infra, workloads, runs, notifications) from them by constructor injection.

    `create_app` hands each handler the contexts it declares; `worker(name)` hands each
    worker what it uses. Tests pass adapters in through the keyword arguments."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock = utc_now,
        kafka: KafkaSettings | None = None,
        read_your_writes_timeout: float = 10.0,
        secret_box: SecretBox | None = None,
        mailer: Mailer | None = None,
        public_url: str | None = None,
        data_dir: Path | None = None,
        aws_endpoint_url: str | None = None,
        aws_principal: str | None = None,
        provider_poll_seconds: float | None = None,
        scheduler: SchedulerSettings | None = None,
        webhook_allow_private: bool = False,
        write_timeouts: WriteTimeouts | None = None,
        isolation: Isolation | None = None,
        job_versions: JobVersions | None = None,
        run_targets: RunTargets | None = None,
        executor_options: dict[str, Any] | None = None,
        run_metrics_interval: float = 5.0,
        runtime: RuntimeSettings | None = None,
    ) -> None:
        # --- shared: the log, the views' pool and positions, secrets, email ---------------
        self.database = database
        # How user work (job attempts, local Sail servers) is kept away from this server;
        # `isolation.describe()` is what the readiness report says about it.
        self.isolation = isolation or Isolation.detect(
            hidden=[data_dir.resolve()] if data_dir is not None else []
        )
        self.clock = clock
        self.kafka = kafka
        self.event_log = EventLog(database, timeouts=write_timeouts)
        self.pool = database.pool(name="views", min_size=2, max_size=20)
        self.positions = Positions(p.view_class.name for p in PROJECTIONS)
        self.reads = ReadYourWrites(self.positions, read_your_writes_timeout)
        self.secret_box = secret_box or FernetSecretBox.generate()
        # Email (verification links, invitations, notifications), through SMTP when it is
        # configured; without it every email is recorded as `not_configured`.
        self.email = Email(mailer)
        # Responses to replay are kept sealed outside the log (they can hold secrets).
        self.replay_bodies = SealedReplayBodies(self.pool, self.secret_box)
        self.requests = Requests(self.event_log, replay_bodies=self.replay_bodies, clock=clock)
        shared = {"clock": clock, "reads": self.reads}

        # --- identity ---------------------------------------------------------------------
        directory = DirectoryView(self.pool)
        oidc = OidcClient()  # signs users in at identity providers, and tests and registers them
        self.identity = IdentityContext(
            commands=Identity(self.event_log, clock=clock, lookup=directory, mail=self.email),
            authentication=Authentication(
                self.event_log,
                clock=clock,
                lookup=directory,
                secret_box=self.secret_box,
                oidc=oidc,
            ),
            identity_providers=IdentityProviders(
                self.event_log, clock=clock, secret_box=self.secret_box, oidc=oidc
            ),
            directory=directory,
            teams=TeamsView(self.pool),
            access=AccessView(self.pool),
            public_url=public_url,
            **shared,
        )

        # --- infra: provider adapters by name (`local`: Sail servers on this host, `aws`,
        # `kubernetes`), each with its settings (tests shorten the poll interval) ---------
        self.aws_endpoint_url = aws_endpoint_url
        sail_state = (data_dir or Path(tempfile.mkdtemp(prefix="sailplane-"))) / "sail"
        poll = {} if provider_poll_seconds is None else {"poll_seconds": provider_poll_seconds}
        providers = Providers(
            {
                "local": LocalProvider(SailServers(sail_state, isolation=self.isolation)),
                "aws": AwsAdapter(
                    endpoint_url=aws_endpoint_url, principal=aws_principal, clock=clock, **poll
                ),
                "kubernetes": KubernetesAdapter(clock=clock, **poll),
            }
        )
        clusters = ClustersView(self.pool)
        infra = Infra(
            self.event_log,
            providers=providers,
            secret_box=self.secret_box,
            lookup=clusters,
            clock=clock,
        )
        self.infra = InfraContext(
            commands=infra,
            sessions=Sessions(self.event_log, infra=infra, clock=clock),
            providers=providers,
            clusters=clusters,
            session_views=SessionsView(self.pool),
            **shared,
        )

        # --- workloads: catalogs (Glue through AWS connections), queries, jobs ------------
        queries = QueriesView(self.pool)
        self.workloads = WorkloadsContext(
            commands=Workloads(
                self.event_log,
                clock=clock,
                secret_box=self.secret_box,
                catalog_backends=CatalogBackends(
                    GlueCatalogs(AwsConnectionRoles(clusters), sts_endpoint_url=aws_endpoint_url)
                ),
                query_usage=queries,
                clusters=clusters,  # jobs run on the infrastructure's clusters
            ),
            catalogs=CatalogsView(self.pool),
            queries=queries,
            jobs=JobsView(self.pool),
            schedules=SchedulesView(self.pool),
            **shared,
        )

        # --- runs: the job versions they copy, where clusters run work, logs --------------
        run_view = RunsView(self.pool)
        # Kept outside the log: the lines runs write and their CPU and memory samples (the
        # executors and the sampler write them, handlers read them through the context).
        self.run_logs = RunLogs(database, pool=self.pool)
        self.run_metrics = RunMetrics(database, pool=self.pool)
        # What the work reports through the run runtime (telemetry, state, heartbeats).
        self.run_telemetry = RunTelemetry(database, pool=self.pool)
        self.run_targets = run_targets or InfraRunTargets(infra)  # the dispatcher asks it
        self.runs = RunsContext(
            commands=Runs(
                self.event_log,
                job_versions=job_versions or JobVersionsFromView(self.workloads.jobs),
                history=run_view,
                clock=clock,
            ),
            view=run_view,
            logs=self.run_logs,
            metrics=self.run_metrics,
            telemetry=self.run_telemetry,
            # Run tokens are signed with a key derived from the secrets key: none is stored.
            tokens=RunTokens(self.secret_box.derived_keys("sailplane run tokens")),
            runtime=runtime or RuntimeSettings(public_url),
            **shared,
        )
        self.executor_options = executor_options or {}  # LocalExecutor settings (tests: leases)
        self.run_metrics_interval = run_metrics_interval

        # --- notifications ----------------------------------------------------------------
        notifications = Notifications(
            self.event_log,
            clock=clock,
            secret_box=self.secret_box,
            webhook_guard=WebhookGuard(allow_private=webhook_allow_private),
        )
        notifications_view = NotificationsView(self.pool)
        self.notifications = NotificationsContext(
            commands=notifications,
            view=notifications_view,
            mail=self.email,
            # Sends a channel's test message (the notifier sends deliveries with its own).
            sender=ChannelSender(notifications_view, notifications, self.email, WebhookSender()),
            **shared,
        )

        # --- the scheduler's settings; following the log and the views ---------------------
        self.scheduler_settings = scheduler or SchedulerSettings()
        self.listener = ChannelListener(database, [self.event_log.channel, VIEWS_CHANNEL])
        self.listener.payload_handlers[VIEWS_CHANNEL] = self.positions.advance_from_payload
        # Positions notified while the listener was away are read again (which also
        # invalidates every cache built on the views, such as the principal cache).
        self.listener.on_connect.append(lambda: self.positions.load(self.pool))

        # `/readyz`: every named check must answer None; other contexts add theirs.
        self.view_lag = ViewLag()
        self.readiness_checks: dict[str, ReadinessCheck] = {
            "database": self._database_ready,
            "views": self._views_ready,
        }

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> System:
        kafka = (
            KafkaSettings(
                settings.kafka_bootstrap_servers,
                partitions=settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
                retention_ms=settings.kafka_retention_ms,
                client_log_level=settings.kafka_log_level,
            )
            if settings.kafka_bootstrap_servers
            else None
        )
        mailer = (
            SmtpMailer(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                settings.smtp_username,
                settings.smtp_password,
                settings.smtp_starttls,
            )
            if settings.smtp_host
            else None
        )
        return cls(
            database,
            kafka=kafka,
            read_your_writes_timeout=settings.read_your_writes_timeout,
            secret_box=FernetSecretBox.from_setting(settings.secrets_key)
            if settings.secrets_key
            else FernetSecretBox.from_key_file(settings.data_dir / "secrets.key"),
            mailer=mailer,
            public_url=settings.public_url,
            scheduler=scheduler_settings(settings),
            data_dir=settings.data_dir,
            aws_endpoint_url=settings.aws_endpoint_url,
            aws_principal=settings.aws_principal,
            webhook_allow_private=settings.webhook_allow_private,
            write_timeouts=WriteTimeouts(
                lock=settings.event_lock_timeout, statement=settings.event_statement_timeout
            ),
            run_metrics_interval=settings.run_metrics_interval,
            runtime=RuntimeSettings(
                api_url=settings.public_url or f"http://{settings.host}:{settings.port}",
                max_item_bytes=settings.runtime_max_item_bytes,
                heartbeat_seconds=settings.runtime_heartbeat_seconds,
                crash_after_seconds=settings.runtime_crash_after_seconds,
            ),
            executor_options={"warm_children": settings.warm_children},
        )

    @property
    def new_events(self) -> Any:
        return self.listener.signals[self.event_log.channel]

    def prepare(self) -> None:
        """Create or rebuild the views, then start following the log and the views."""
        for projection_class in PROJECTIONS:
            try:
                prepare_view(self.event_log, projection_class, self.pool)
            except UnknownEvent as exc:
                # The rebuild stopped before an event it cannot read: the live tables stay,
                # the server starts, and /readyz says what is wrong until it is fixed.
                log.error("view %s was not rebuilt: %s", projection_class.view_class.name, exc)
                self.positions.stop(exc)
        self.positions.load(self.pool)
        self.run_logs.create_table()
        self.run_metrics.create_table()
        self.run_telemetry.create_table()
        self.replay_bodies.create_table()
        self.replay_bodies.expire(self.clock())
        self.listener.start()

    def catch_up_views(self) -> None:
        """Bring every view up to the head of the log in this process (no worker running)."""
        ProjectionsWorker(
            self.event_log, self.pool, self.positions, self.new_events
        ).runner.catch_up()

    def cancel_appends(self) -> None:
        """Cancel the log appends in flight (each answers 503): a stopping server waits for none."""
        self.event_log.recorder.cancel_appends()

    def views_reached(self, position: int) -> bool:
        """Block (bounded) until every view has processed `position`; say whether they did."""
        return self.reads.views_reached(position)

    def wait_for_views(self, position: int) -> None:
        """Read-your-writes: `ViewsBehindError` (503) when the views do not reach `position`."""
        self.reads.wait_for_views(position)

    # --- readiness -------------------------------------------------------------------------

    def isolation_report(self) -> dict[str, Any]:
        """How user work is kept away from this server, as the readiness report says it."""
        return self.isolation.describe()

    def readiness(self) -> dict[str, str | None]:
        """Each readiness check by name: None when ready, else what is not."""
        results: dict[str, str | None] = {}
        for name, check in self.readiness_checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # a failing check is a "not ready", with its reason
                results[name] = f"{type(exc).__name__}: {exc}"
        return results

    def _database_ready(self) -> str | None:
        with self.pool.connection(timeout=5.0) as conn:
            conn.execute("SELECT 1")
        return None

    def _views_ready(self) -> str | None:
        if self.positions.stopped is not None:
            return str(self.positions.stopped)
        names = [p.view_class.name for p in PROJECTIONS]
        with self.pool.connection(timeout=5.0) as conn:
            row = conn.execute(
                f"SELECT min(position) AS lowest, count(*) AS views FROM {POSITIONS_TABLE} "
                "WHERE name = ANY(%s)",
                (names,),
            ).fetchone()
        lowest = int(row["lowest"]) if row and row["views"] == len(names) else 0
        return self.view_lag.check(self.event_log.head(), lowest)

    # --- workers ---------------------------------------------------------------------------

    def worker(self, name: str) -> Worker:
        if name == "projections":
            return ProjectionsWorker(self.event_log, self.pool, self.positions, self.new_events)
        if name == "relay":
            if self.kafka is None:
                raise ValueError("the relay publishes to Kafka: set KAFKA_BOOTSTRAP_SERVERS")
            return RelayWorker(self.event_log, self.kafka, self.new_events)
        if name in CONSUMERS:
            consumer = CONSUMERS[name](self)
            return ConsumerWorker(consumer, self._source_for(consumer), self.event_log)
        if name == "dispatcher":
            return dispatcher_worker(self)
        if name == "scheduler":
            return scheduler_worker(self)
        raise ValueError(f"unknown worker {name!r}; known: {', '.join(self.worker_names())}")

    @staticmethod
    def worker_names() -> list[str]:
        """Every `sailplane worker <name>`."""
        return ["projections", "relay", *CONSUMERS, "dispatcher", "scheduler"]

    def in_process_workers(self) -> list[Worker]:
        """What `serve` runs besides the API: everything, the relay only when Kafka is set."""
        return [
            self.worker(n) for n in self.worker_names() if n != "relay" or self.kafka is not None
        ]

    def _source_for(self, consumer: Consumer) -> EventSource:
        if self.kafka is not None:
            return KafkaEventSource(
                self.kafka,
                group_id=f"sailplane-{consumer.name}",
                topics=consumer.kafka_topics,
                max_handle_seconds=consumer.max_handle_seconds,
            )
        return LogEventSource(
            self.event_log,
            consumer=consumer.name,
            kafka_topics=consumer.kafka_topics,
            new_events=self.new_events,
        )

    def close(self) -> None:
        self.infra.providers.close()
        self.listener.stop()
        self.pool.close()
        self.event_log.close()
        self.isolation.close()


class ProjectionsWorker:
    """`sailplane worker projections`: every view, fed by one runner (one transaction per batch)."""

    name = "projections"

    def __init__(self, event_log: EventLog, pool: Any, positions: Positions, new_events: Any):
        self.new_events = new_events
        self.runner = ProjectionRunner(
            event_log, [p(p.view_class(pool)) for p in PROJECTIONS], positions=positions
        )

    def run(self, stop: threading.Event) -> None:
        self.runner.run_forever(stop, self.new_events)


def dispatcher_worker(system: System) -> Worker:
    """`sailplane worker dispatcher`: claims, submits and monitors job runs."""
    runs = system.runs
    local = LocalExecutor(
        system.database, system.run_logs, isolation=system.isolation, **system.executor_options
    )
    local.create_table()
    dispatcher = RunDispatcher(
        runs=runs.commands,
        view=runs.view,
        executors={local.kind: local, KubernetesExecutor.kind: KubernetesExecutor(system.run_logs)},
        targets=system.run_targets,
        queries=QueryTexts(system.workloads.queries.query),
        logs=system.run_logs,
        metrics=system.run_metrics,
        telemetry=system.run_telemetry,
        tokens=runs.tokens,
        runtime=runs.runtime,
        pool=system.pool,
        catch_up=lambda: runs.views_reached(system.event_log.head()),
        clock=runs.clock,
    )
    sampler = RunSampler(
        lambda: runs.view.runs_in((RUNNING,)),
        dispatcher.usage,
        system.run_metrics,
        runs.clock,
        interval=system.run_metrics_interval,
    )
    return DispatcherWorker(
        dispatcher, system._source_for(dispatcher), system.event_log, sampler=sampler
    )


def scheduler_worker(system: System) -> Worker:
    """`sailplane worker scheduler`: turns due schedule slots into runs while it leads."""
    scheduler = Scheduler(
        system.workloads.schedules,
        RunsForScheduler(system.runs.commands),
        system.clock,
        system.scheduler_settings,
    )
    return SchedulerWorker(scheduler, Leadership(system.database, "scheduler"))


class RelayWorker:
    name = "relay"

    def __init__(self, event_log: EventLog, kafka: KafkaSettings, new_events: Any) -> None:
        self.new_events = new_events
        self.relay = KafkaRelay(event_log, kafka)

    def run(self, stop: threading.Event) -> None:
        self.relay.run(stop, self.new_events)


class WorkerHost:
    """Runs workers in threads. A worker that fails stops them all and its error is raised."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._stop: threading.Event | None = None

    def start(self, worker: Worker, stop: threading.Event) -> None:
        self._stop = stop

        def run() -> None:
            try:
                worker.run(stop)
            except BaseException as exc:
                log.exception("worker %s failed; stopping", worker.name)
                self.errors.append((worker.name, exc))
                stop.set()

        thread = threading.Thread(target=run, name=f"worker-{worker.name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)
        if self.errors:
            name, error = self.errors[0]
            raise RuntimeError(f"worker {name} failed: {error!r}") from error


# --- first start ---------------------------------------------------------------------------
# Each hook takes the parts it uses and must be idempotent (it runs on every start of every
# replica); `start_up` hands them those parts.


def bootstrap_organization(identity: IdentityContext, settings: Settings) -> None:
    founded: FoundedOrganization | None = identity.commands.bootstrap(
        name=settings.organization_name,
        owner_email=settings.owner_email,
        owner_name=settings.owner_name,
        token=settings.bootstrap_token,
    )
    # The owner's key stays in this process's environment no longer than this use.
    os.environ.pop("SAILPLANE_BOOTSTRAP_TOKEN", None)
    if founded is None:
        return
    identity.views_reached(founded.position)
    if settings.owner_password:
        identity.views_reached(
            identity.commands.change_password(
                founded.owner_user_id,
                current_password=None,
                new_password=settings.owner_password,
                by=Actor.system("bootstrap", founded.organization_id),
            )
        )
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    if settings.bootstrap_token:
        log.warning(
            "first start: organization %s created; the owner's API key is "
            'SAILPLANE_BOOTSTRAP_TOKEN: sailplane login %s --token "$SAILPLANE_BOOTSTRAP_TOKEN"',
            founded.organization_id,
            url,
        )
    else:
        print(
            f"\nFirst start: organization {founded.organization_id} and its owner {settings.owner_email} created.\n"
            f"The owner's API key (shown only now; `sailplane admin create-token` issues another):\n\n"
            f"    {founded.token}\n\n"
            f"Use it with the command line or any HTTP client:\n\n"
            f"    sailplane login {url} --token {founded.token}\n"
            f"    curl -H 'Authorization: Bearer {founded.token}' {url}/api/v1/me\n",
            flush=True,
        )


def ensure_local_clusters(infra: InfraContext) -> None:
    """Every organization has its `local` connection, network and active cluster (derived ids)."""
    for organization_id in infra.clusters.organizations_without_local_cluster():
        infra.views_reached(infra.commands.ensure_local_cluster(organization_id).position)


def start_up(system: System, settings: Settings) -> None:
    """Run every start-up hook with what it uses; each is idempotent, so restarts and
    replicas are safe."""
    system.isolation.warn_if_not_isolated()  # say loudly when user work is not kept apart
    bootstrap_organization(system.identity, settings)
    ensure_local_clusters(system.infra)
