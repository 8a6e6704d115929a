"""The Job aggregate and schedules as pure domain code: events, the version machine, diffs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sailplane.domain.base import Actor
from sailplane.domain.errors import (
    ConflictError,
    InvalidRequestError,
    InvalidValueError,
    NotFoundError,
)
from sailplane.domain.jobs import Job, diff_specs, max_retries_of, query_id_of
from sailplane.domain.schedule import (
    check_cron_expression,
    check_timezone,
    fires_between,
    next_fire,
)

BY = Actor("member", "MEMBER0001", "ORG0000001")
OTHER = Actor("member", "MEMBER0002", "ORG0000001")
AT = datetime(2026, 11, 23, tzinfo=UTC)


def _job(**spec: Any) -> Job:
    return Job.create(
        id="JOB0000001",
        job_key="daily-sales-etl",
        description="Daily ETL",
        status="active",
        spec={"cluster_id": "CLUSTER001", **spec},
        team_ids=["TEAM000002", "TEAM000001"],
        by=BY,
        at=AT,
    )


def test_create_makes_version_one_published_and_active() -> None:
    job = _job(cron_expression="0  2 * * *", config={"sql": {"queryId": "QUERY00001"}})
    assert job.current_version == 1 and job.draft_version is None
    record = job.versions[1]
    assert record["status"] == "published"
    assert record["created_by"] == record["published_by"] == "member:MEMBER0001"
    assert record["based_on_version"] is None
    assert job.active_spec["cron_expression"] == "0 2 * * *"  # normalized
    assert job.active_spec["cron_timezone"] == "UTC"
    assert job.active_spec["concurrency_policy"] == "allow"
    assert job.active_spec["max_concurrent_runs"] == 1
    assert job.active_spec["description"] == "Daily ETL"
    assert query_id_of(job.active_spec) == "QUERY00001"
    assert job.team_ids == ["TEAM000001", "TEAM000002"]
    (created,) = job.collect_events()
    assert type(created).__name__ == "Created"


def test_create_needs_a_team_and_a_cluster() -> None:
    with pytest.raises(InvalidValueError) as raised:
        Job.create(
            id="JOB0000001",
            job_key="k",
            description=None,
            status="active",
            spec={"cluster_id": "CLUSTER001"},
            team_ids=[],
            by=BY,
            at=AT,
        )
    assert raised.value.field == "teamIds"
    with pytest.raises(InvalidValueError) as raised:
        Job.create(
            id="JOB0000001",
            job_key="k",
            description=None,
            status="active",
            spec={},
            team_ids=["TEAM000001"],
            by=BY,
            at=AT,
        )
    assert raised.value.field == "clusterId"


def test_a_draft_copies_the_active_version_and_the_overrides_win() -> None:
    job = _job(timeout_seconds=60, cron_expression="0 2 * * *")
    assert job.create_draft({"timeout_seconds": 120}, by=OTHER, at=AT) == 2
    draft = job.versions[2]
    assert draft["status"] == "draft" and draft["based_on_version"] == 1
    assert draft["timeout_seconds"] == 120
    assert draft["cron_expression"] == "0 2 * * *"
    assert draft["created_by"] == "member:MEMBER0002" and draft["published_by"] is None
    with pytest.raises(ConflictError) as raised:
        job.create_draft({}, by=BY, at=AT)
    assert raised.value.code == "job_draft_exists"


def test_patch_draft_changes_only_the_fields_sent() -> None:
    job = _job(timeout_seconds=60, max_concurrent_runs=3)
    job.create_draft({}, by=BY, at=AT)
    job.update_draft({"timeout_seconds": 90}, by=BY, at=AT)
    job.update_draft({"timeout_seconds": 90}, by=BY, at=AT)  # no change: no event
    assert job.versions[2]["timeout_seconds"] == 90
    assert job.versions[2]["max_concurrent_runs"] == 3
    assert [type(e).__name__ for e in job.collect_events()][-2:] == [
        "DraftCreated",
        "DraftUpdated",
    ]


def test_draft_calls_without_a_draft() -> None:
    job = _job()
    with pytest.raises(NotFoundError):
        job.update_draft({}, by=BY, at=AT)
    with pytest.raises(NotFoundError):
        job.discard_draft(by=BY, at=AT)
    with pytest.raises(InvalidRequestError):  # publish is 400, as documented
        job.publish_draft(by=BY, at=AT)


def test_publish_makes_the_draft_active_and_records_who() -> None:
    job = _job()
    job.create_draft({"config": {"sql": {"queryId": "QUERY00002"}}}, by=BY, at=AT)
    assert job.publish_draft(by=OTHER, at=AT) == 2
    assert job.current_version == 2 and job.draft_version is None
    assert job.versions[2]["published_by"] == "member:MEMBER0002"
    published = job.collect_events()[-1]
    assert isinstance(published, Job.DraftPublished) and published.query_id == "QUERY00002"


def test_discarding_frees_the_number_for_the_next_draft() -> None:
    job = _job()
    job.create_draft({}, by=BY, at=AT)
    job.discard_draft(by=BY, at=AT)
    assert 2 not in job.versions and job.draft_version is None
    assert job.create_draft({}, by=BY, at=AT) == 2


def test_create_and_activate_version_refuse_a_draft() -> None:
    job = _job()
    job.create_draft({}, by=BY, at=AT)
    with pytest.raises(ConflictError):
        job.create_version({}, by=BY, at=AT)
    with pytest.raises(ConflictError):
        job.activate_version(1, by=BY, at=AT)


def test_activate_an_older_version_and_a_missing_one() -> None:
    job = _job(timeout_seconds=10)
    assert job.create_version({"timeout_seconds": 20}, by=BY, at=AT) == 2
    assert job.current_version == 2 and job.versions[2]["based_on_version"] == 1
    job.activate_version(1, by=BY, at=AT)
    assert job.current_version == 1 and job.active_spec["timeout_seconds"] == 10
    with pytest.raises(NotFoundError):
        job.activate_version(7, by=BY, at=AT)
    # a version made from version 1 while it is active is based on 1
    assert job.create_version({}, by=BY, at=AT) == 3
    assert job.versions[3]["based_on_version"] == 1


def test_metadata_never_changes_the_version_and_checks_the_revision() -> None:
    job = _job()
    job.create_version({}, by=BY, at=AT)
    assert job.version == 2  # created, then a version: the revision a PATCH names
    job.update_metadata({"status": "paused"}, expected_version=2, by=BY, at=AT)
    assert job.status == "paused" and job.current_version == 2 and job.version == 3
    # a second edit made from the same read loses, though the configuration did not move
    with pytest.raises(ConflictError) as raised:
        job.update_metadata({"description": "x"}, expected_version=2, by=BY, at=AT)
    assert raised.value.code == "job_version_stale"
    job.update_metadata({"description": "x"}, expected_version=3, by=BY, at=AT)
    with pytest.raises(InvalidValueError):
        job.update_metadata({"status": "stopped"}, expected_version=None, by=BY, at=AT)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cron_expression", "not a cron"),
        ("cron_expression", "61 * * * *"),
        ("cron_expression", "* * * *"),
        ("cron_timezone", "Mars/Olympus"),
        ("concurrency_policy", "sometimes"),
        ("max_concurrent_runs", 0),
        ("missed_schedule_policy", "most"),
        ("timeout_seconds", 0),
    ],
)
def test_schedule_fields_are_validated(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError):
        _job(**{field: value})


def test_config_checks() -> None:
    with pytest.raises(InvalidValueError) as raised:
        _job(config={"lakesail": {"maxRetries": -1}})
    assert raised.value.field == "config.lakesail.maxRetries"
    assert max_retries_of(_job(config={"lakesail": {"maxRetries": 3}}).active_spec) == 3
    assert max_retries_of(_job().active_spec) == 0
    with pytest.raises(InvalidValueError) as raised:
        _job(config={"sql": {"source": "SELECT 1"}, "python": {"source": "print(1)"}})
    assert raised.value.field == "config"
    with pytest.raises(InvalidValueError) as raised:
        _job(config={"python": "main.py"})
    assert raised.value.field == "config.python"


def test_diff_names_the_changed_fields_by_path() -> None:
    job = _job(config={"sql": {"queryId": "QUERY00001", "source": "a"}}, timeout_seconds=5)
    job.create_version(
        {"config": {"sql": {"queryId": "QUERY00002", "source": "a"}}, "timeout_seconds": 6},
        by=BY,
        at=AT,
    )
    assert diff_specs(job.spec(1), job.spec(2)) == [
        {"field": "config.sql.queryId", "from": "QUERY00001", "to": "QUERY00002"},
        {"field": "timeoutSeconds", "from": 5, "to": 6},
    ]
    assert diff_specs(job.spec(2), job.spec(2)) == []


def test_next_fire_reads_the_expression_in_its_zone() -> None:
    after = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    # 02:00 New York time on 8 March 2026 (the day clocks move forward at 02:00) is 07:00 UTC
    assert next_fire("0 2 * * *", "America/New_York", after) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )
    assert next_fire("0 2 * * *", "UTC", after) == datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    assert len(fires_between("*/5 * * * *", "UTC", after, after.replace(hour=13), limit=3)) == 3


def test_cron_and_zone_checks() -> None:
    assert check_cron_expression(" 0 2  * * * ") == "0 2 * * *"
    assert check_cron_expression(None) is None
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(InvalidRequestError):
        check_timezone("../etc/passwd")


@given(st.text(max_size=30))
def test_any_cron_text_is_accepted_or_refused_with_400(text: str) -> None:
    try:
        check_cron_expression(text)
    except InvalidRequestError as error:
        assert "cronExpression" in error.message


class VersionMachine(RuleBasedStateMachine):
    """The aggregate against a model of current/draft/published versions."""

    def __init__(self) -> None:
        super().__init__()
        self.job = _job()
        self.current, self.draft, self.published = 1, None, [1]

    @rule()
    def create_draft(self) -> None:
        if self.draft is not None:
            with pytest.raises(ConflictError):
                self.job.create_draft({}, by=BY, at=AT)
            return
        self.draft = self.job.create_draft({}, by=BY, at=AT)
        assert self.draft == max(self.published) + 1

    @rule()
    def discard(self) -> None:
        if self.draft is None:
            with pytest.raises(NotFoundError):
                self.job.discard_draft(by=BY, at=AT)
            return
        self.job.discard_draft(by=BY, at=AT)
        self.draft = None

    @rule()
    def publish(self) -> None:
        if self.draft is None:
            with pytest.raises(InvalidRequestError):
                self.job.publish_draft(by=BY, at=AT)
            return
        self.job.publish_draft(by=BY, at=AT)
        self.published.append(self.draft)
        self.current, self.draft = self.draft, None

    @rule()
    def create_version(self) -> None:
        if self.draft is not None:
            with pytest.raises(ConflictError):
                self.job.create_version({}, by=BY, at=AT)
            return
        version = self.job.create_version({}, by=BY, at=AT)
        self.published.append(version)
        self.current = version

    @rule(version=st.integers(min_value=0, max_value=8))
    def activate(self, version: int) -> None:
        if self.draft is not None:
            with pytest.raises(ConflictError):
                self.job.activate_version(version, by=BY, at=AT)
        elif version not in self.published:
            with pytest.raises(NotFoundError):
                self.job.activate_version(version, by=BY, at=AT)
        else:
            self.job.activate_version(version, by=BY, at=AT)
            self.current = version

    @invariant()
    def matches_the_model(self) -> None:
        assert self.job.current_version == self.current
        assert self.job.draft_version == self.draft
        published = sorted(v for v, r in self.job.versions.items() if r["status"] == "published")
        assert published == sorted(self.published)


VersionMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
test_version_machine = VersionMachine.TestCase
