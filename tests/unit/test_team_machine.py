"""The Team aggregate against a model, under random sequences of commands (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.identity import Team
from sailplane.domain.requests import ClaimOutcome, IdempotentRequest

OWNER = Actor("member", "OWNER00001", "ORG0000001")
MEMBERS = [f"MEMBER{i:04d}" for i in range(4)]
ROLES = ["TEAMADMIN", "TEAMMEMBER", "OWNER", ""]


class TeamMachine(RuleBasedStateMachine):
    @initialize()
    def create(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.team = Team.create(
            id="TEAM000001", name="Model", default_role_id=None, by=OWNER, at=self.now
        )
        self.model_members: dict[str, list[str]] = {}
        self.model_default = "TEAMMEMBER"
        self.events = list(self.team.collect_events())

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    @rule(member=st.sampled_from(MEMBERS), roles=st.lists(st.sampled_from(ROLES), max_size=2))
    def add(self, member: str, roles: list[str]) -> None:
        try:
            self.team.add_member(
                member, membership_id="M" + member, role_ids=roles, by=OWNER, at=self._tick()
            )
        except ConflictError:
            assert member in self.model_members
        except InvalidValueError:
            assert any(r not in ("TEAMADMIN", "TEAMMEMBER") for r in roles)
        else:
            assert member not in self.model_members
            self.model_members[member] = sorted(set(roles)) or [self.model_default]

    @rule(member=st.sampled_from(MEMBERS), roles=st.lists(st.sampled_from(ROLES), max_size=2))
    def replace_roles(self, member: str, roles: list[str]) -> None:
        try:
            self.team.replace_member_roles(member, roles, by=OWNER, at=self._tick())
        except NotFoundError:
            assert member not in self.model_members
        except InvalidValueError:
            assert not roles or any(r not in ("TEAMADMIN", "TEAMMEMBER") for r in roles)
        else:
            self.model_members[member] = sorted(set(roles))

    @rule(member=st.sampled_from(MEMBERS))
    def remove(self, member: str) -> None:
        try:
            self.team.remove_member(member, by=OWNER, at=self._tick())
        except NotFoundError:
            assert member not in self.model_members
        else:
            del self.model_members[member]

    @rule(role=st.sampled_from(["TEAMADMIN", "TEAMMEMBER"]), name=st.text(min_size=1, max_size=8))
    def update(self, role: str, name: str) -> None:
        try:
            self.team.update(name=name, default_role_id=role, by=OWNER, at=self._tick())
        except InvalidValueError:
            assert not name.strip()
        else:
            self.model_default = role

    @invariant()
    def matches_the_model(self) -> None:
        assert {m: v["role_ids"] for m, v in self.team.members.items()} == self.model_members
        assert self.team.default_role_id == self.model_default

    @invariant()
    def replaying_the_events_gives_the_same_team(self) -> None:
        self.events += self.team.collect_events()
        replayed = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert replayed.members == self.team.members
        assert replayed.version == self.team.version == len(self.events)
        assert all(
            e.organization_id == OWNER.organization_id and e.actor == str(OWNER)
            for e in self.events
        )


TestTeamMachine = TeamMachine.TestCase


def test_idempotency_claims_replay_mismatch_and_expire() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    request = IdempotentRequest.claim_new(id="idx:1", key="k", fingerprint="f1", by=OWNER, at=start)
    assert request.claim("f1", by=OWNER, at=start) is ClaimOutcome.IN_PROGRESS
    request.complete(status_code=201, resource_id="T1", by=OWNER, at=start)
    assert request.claim("f1", by=OWNER, at=start + timedelta(hours=1)) is ClaimOutcome.REPLAY
    assert request.claim("f2", by=OWNER, at=start + timedelta(hours=1)) is ClaimOutcome.MISMATCH
    assert request.claim("f2", by=OWNER, at=start + timedelta(hours=25)) is ClaimOutcome.CLAIMED
    assert request.state == "in_progress" and request.fingerprint == "f2"
    request.abandon(by=OWNER, at=start + timedelta(hours=25))
    assert request.claim("f3", by=OWNER, at=start + timedelta(hours=25)) is ClaimOutcome.CLAIMED


def test_a_stale_in_progress_claim_can_be_taken_over() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    request = IdempotentRequest.claim_new(id="idx:2", key="k", fingerprint="f1", by=OWNER, at=start)
    assert (
        request.claim("f1", by=OWNER, at=start + timedelta(minutes=1)) is ClaimOutcome.IN_PROGRESS
    )
    assert request.claim("f1", by=OWNER, at=start + timedelta(minutes=3)) is ClaimOutcome.CLAIMED


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_team_names_must_be_present_and_short(name: str) -> None:
    with pytest.raises(InvalidValueError):
        Team.create(id="T", name=name, default_role_id=None, by=OWNER, at=datetime.now(UTC))
