"""The infrastructure status machines against a model, under random command sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.infra import Cluster, ExternalCluster, Operation
from sailplane.domain.sessions import Session

OWNER = Actor("member", "OWNER00001", "ORG0000001")

# action -> (statuses it is allowed from, the status it leads to)
ACTIONS = {
    "provision": (("pending", "failed"), "provisioning"),
    "update": (("active",), "updating"),
    "destroy": (("active", "failed"), "destroying"),
}
RUNNING = {"provisioning", "updating", "destroying"}


class ClusterMachine(RuleBasedStateMachine):
    @initialize()
    def create(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.external = ExternalCluster.create(
            id="EXT0000001",
            connection_id="CON0000001",
            network_id="NET0000001",
            cluster_id="CLU0000001",
            name="k",
            region="local",
            config={},
            by=OWNER,
            at=self.now,
        )
        self.cluster = Cluster.create_for(
            self.external, provider="local", open_to_all_members=False, by=OWNER, at=self.now
        )
        self.status = "pending"
        self.provisioned = False
        self.deleted = False
        self.operations = 0

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    @rule(action=st.sampled_from(sorted(ACTIONS)))
    def start(self, action: str) -> None:
        allowed, target = ACTIONS[action]
        self.operations += 1
        method = {
            "provision": self.external.start_provisioning,
            "update": self.external.start_update,
            "destroy": self.external.start_destroying,
        }[action]
        try:
            method(f"OP{self.operations:08d}", by=OWNER, at=self._tick())
        except ConflictError as error:
            assert self.status not in allowed
            assert self.status in error.message  # the current status is named
        else:
            assert self.status in allowed
            self.status = target
            self.provisioned = self.provisioned or action == "provision"
        self.cluster.mirror(self.external, by=OWNER, at=self.now)

    @rule(ok=st.booleans())
    def finish(self, ok: bool) -> None:
        self.external.finish(ok=ok, message=None, outputs={}, by=OWNER, at=self._tick())
        if self.status in RUNNING:
            self.status = (
                "failed" if not ok else "destroyed" if self.status == "destroying" else "active"
            )
        self.cluster.mirror(self.external, by=OWNER, at=self.now)

    @rule()
    def delete(self) -> None:
        if self.deleted:
            return
        try:
            self.external.delete(by=OWNER, at=self._tick())
        except ConflictError:
            assert self.status != "destroyed" and (self.status != "pending" or self.provisioned)
        else:
            assert self.status == "destroyed" or (self.status == "pending" and not self.provisioned)
            self.deleted = True

    @invariant()
    def follows_the_model(self) -> None:
        assert self.external.status == self.status
        # The workload cluster mirrors the provisioned one; it is usable only when active.
        assert self.cluster.external_status == self.status
        assert self.cluster.usable == (self.status == "active")

    @invariant()
    def replaying_the_events_gives_the_same_cluster(self) -> None:
        self.events = [*getattr(self, "events", []), *self.external.collect_events()]
        replayed = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert (replayed.status, replayed.deleted, replayed.operation_id) == (
            self.external.status,
            self.deleted,
            self.external.operation_id,
        )


TestClusterMachine = ClusterMachine.TestCase


class SessionMachine(RuleBasedStateMachine):
    @initialize()
    def create(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.session = Session.create(
            id="SES0000001",
            by=OWNER,
            at=self.now,
            name="s",
            endpoint_type="spark_connect",
            workload_config_id="CFG0000001",
            cluster_id="CLU0000001",
            team_id=None,
            member_id=OWNER.id,
            service_account_id=None,
            notebook_id=None,
            config={},
            metadata={},
            sealed_token_key="sealed",
            relaunched_from=None,
        )
        self.status = "pending"

    @rule()
    def open(self) -> None:
        self.session.open("sc://127.0.0.1:1", by=OWNER, at=self.now)
        if self.status == "pending":
            self.status = "active"

    @rule()
    def fail(self) -> None:
        self.session.fail("no", by=OWNER, at=self.now)
        if self.status == "pending":
            self.status = "failed"

    @rule()
    def close(self) -> None:
        try:
            self.session.close(by=OWNER, at=self.now)
        except ConflictError as error:
            assert self.status in ("closed", "failed") and self.status in error.message
        else:
            assert self.status in ("pending", "active", "idle")
            self.status = "closed"

    @rule()
    def end_with_its_cluster(self) -> None:
        self.session.end("cluster_destroyed", by=OWNER, at=self.now)
        if self.status not in ("closed", "failed"):
            self.status = "closed"

    @rule()
    def relaunch(self) -> None:
        try:
            self.session.check_relaunchable()
        except ConflictError:
            assert self.status not in ("closed", "failed")
        else:
            assert self.status in ("closed", "failed")

    @invariant()
    def follows_the_model(self) -> None:
        assert self.session.status == self.status


TestSessionMachine = SessionMachine.TestCase


def test_an_operation_ends_once() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    operation = Operation.create(
        id="OP00000001",
        operation="provision_cluster",
        resource_id="EXT0000001",
        connection_id="CON0000001",
        by=OWNER,
        at=at,
    )
    assert (operation.status, operation.resource_type, operation.member_id) == (
        "pending",
        "cluster",
        OWNER.id,
    )
    assert operation.start(by=OWNER, at=at) is True
    assert operation.start(by=OWNER, at=at) is False  # a redelivery
    operation.record_progress(
        "server",
        "starting",
        [{"urn": "u", "type": "t", "name": "n", "status": "running"}],
        by=OWNER,
        at=at,
    )
    assert operation.progress["summary"] == {
        "total": 1,
        "pending": 0,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "unchanged": 0,
    }
    operation.succeed({"endpoint": "sc://x"}, message="done", by=OWNER, at=at)
    operation.fail(code="late", message="late", retryable=True, by=OWNER, at=at)
    assert operation.status == "succeeded"
    assert operation.progress["summary"]["succeeded"] == 1
    events = operation.collect_events()
    assert [type(e).__name__ for e in events] == ["Created", "Started", "Progressed", "Succeeded"]


@pytest.mark.parametrize("name", ["", " ", "x" * 101, "a\nb"])
def test_names_are_checked(name: str) -> None:
    from sailplane.domain.errors import InvalidValueError
    from sailplane.domain.infra import check_name

    with pytest.raises(InvalidValueError):
        check_name(name)
