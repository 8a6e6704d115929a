"""Notifications, pure: event types, digest times, the delivery lifecycle, signatures, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.notification_sources import Lookup, Notable, NotificationSources
from sailplane.domain.notifications import (
    TERMINAL_RUN_EVENTS,
    DigestSchedule,
    NotificationDelivery,
    check_channel_config,
    expand_event_types,
)
from sailplane.infra_adapters.webhooks import Backoff, WebhookGuard, signature, verify_signature

BY = Actor.system("notifier", "ORG0000001")
AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_the_terminal_shortcut_expands_and_duplicates_fold() -> None:
    assert expand_event_types(["job_run.terminal", "job_run.failed"]) == list(TERMINAL_RUN_EVENTS)
    with pytest.raises(InvalidValueError):
        expand_event_types(["job_run.exploded"])
    with pytest.raises(InvalidValueError):
        expand_event_types([])


def test_a_notable_event_has_a_concrete_type() -> None:
    with pytest.raises(ValueError):
        Notable(event_type="job_run.terminal", resource_type="job_run", resource_id="R", subject="")
    Notable(event_type="cluster.failed", resource_type="cluster", resource_id="C", subject="x")


def test_the_registry_maps_subclasses_and_may_say_not_notable() -> None:
    class Base:
        status = "failed"

    class Child(Base):
        status = "running"

    sources = NotificationSources()

    @sources.maps(Base)
    def _(event: Base, lookup: Lookup) -> Notable | None:
        if event.status != "failed":
            return None
        return Notable(event_type="job_run.failed", resource_type="job_run", resource_id="R",
                       subject="failed")  # fmt: skip

    def lookup(aggregate_id: str, version: int | None = None) -> None:
        return None

    assert sources.notable(Base(), lookup) is not None
    assert sources.notable(Child(), lookup) is None
    assert sources.notable(object(), lookup) is None


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


@given(
    moment=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    hour=st.sampled_from([0, 6, 8, 12, 18, 23]),  # never inside a DST gap of these zones
    minute=st.integers(0, 59),
    zone=st.sampled_from(ZONES),
    day=st.none() | st.integers(0, 6),
)
def test_the_next_digest_time_is_the_first_matching_local_time_after(
    moment: datetime, hour: int, minute: int, zone: str, day: int | None
) -> None:
    schedule = DigestSchedule(f"{hour:02d}:{minute:02d}", zone, day)
    found = schedule.next_after(moment)
    local = found.astimezone(ZoneInfo(zone))
    assert found > moment
    assert (local.hour, local.minute) == (hour, minute)
    assert found - moment <= timedelta(days=7 if day is not None else 1, hours=1)
    if day is not None:
        assert (local.weekday() + 1) % 7 == day


def test_a_weekly_digest_on_sunday() -> None:
    # 2026-03-04 is a Wednesday; the next Sunday 09:30 in New York is 2026-03-08 (EDT starts).
    schedule = DigestSchedule("09:30", "America/New_York", 0)
    assert schedule.next_after(datetime(2026, 3, 4, 12, tzinfo=UTC)) == datetime(
        2026, 3, 8, 13, 30, tzinfo=UTC
    )


def _delivery(skipped: str | None = None) -> NotificationDelivery:
    return NotificationDelivery.record(
        rule_id="RULE000001", channel_id="CHAN000001", event_id="EVNT000001",
        event_type="job_run.failed", target_summary="x", skipped_because=skipped,
        digest_at=None, by=BY, at=AT,
    )  # fmt: skip


def test_a_delivery_id_is_a_function_of_rule_channel_and_event() -> None:
    assert (
        _delivery().id
        == _delivery().id
        == NotificationDelivery.id_for("RULE000001", "CHAN000001", "EVNT000001")
    )
    assert _delivery().id != NotificationDelivery.id_for("RULE000001", "CHAN000002", "EVNT000001")


def test_the_delivery_lifecycle() -> None:
    delivery = _delivery()
    with pytest.raises(ConflictError):
        delivery.replay(by=BY, at=AT)
    delivery.start(by=BY, at=AT)
    with pytest.raises(ConflictError):
        delivery.start(by=BY, at=AT)
    delivery.attempt_failed("500", next_attempt_at=AT + timedelta(seconds=1), by=BY, at=AT)
    # Waiting for its retry it stays delivering, and may be taken again (only then).
    assert (delivery.status, delivery.next_attempt_at) == ("delivering", AT + timedelta(seconds=1))
    delivery.start(by=BY, at=AT)
    assert delivery.next_attempt_at is None
    with pytest.raises(ConflictError):
        delivery.start(by=BY, at=AT)
    delivery.failed("500 again", by=BY, at=AT)
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    delivery.replay(by=BY, at=AT)
    delivery.start(by=BY, at=AT)
    delivery.delivered(by=BY, at=AT)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    with pytest.raises(ConflictError):
        delivery.replay(by=BY, at=AT)
    skipped = _delivery("the rule is muted")
    assert skipped.status == "skipped"
    skipped.replay(by=BY, at=AT)
    assert skipped.status == "pending"


def test_channel_configurations() -> None:
    assert check_channel_config("member", {}, owner_member_id="M1").config == {"memberId": "M1"}
    webhook = check_channel_config(
        "webhook",
        {"url": "https://x.example/h", "secret": "0123456789abcdef"},
        owner_member_id=None,
    )
    assert webhook.config == {"url": "https://x.example/h"} and webhook.secret
    with pytest.raises(InvalidValueError):
        check_channel_config("email", {"addresses": ["a@b.co"], "cc": []}, owner_member_id=None)


def test_a_signature_verifies_only_for_its_secret_body_and_time() -> None:
    body = b'{"specversion":"1.0"}'
    header = signature("secret-one", 1_700_000_000, body)
    assert verify_signature("secret-one", header, body, now=1_700_000_010)
    assert not verify_signature("secret-two", header, body, now=1_700_000_010)
    assert not verify_signature("secret-one", header, body + b" ", now=1_700_000_010)
    assert not verify_signature("secret-one", header, body, now=1_700_001_000)
    assert not verify_signature("secret-one", "garbage", body, now=1_700_000_010)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(max_attempts=8, base=1.0, cap=10.0)
    assert [backoff.delay(n, lambda: 1.0) for n in range(1, 6)] == [1, 2, 4, 8, 10]
    assert [backoff.delay(n, lambda: 0.0) for n in range(1, 4)] == [0.5, 1, 2]


def test_the_webhook_guard_refuses_internal_addresses_by_default() -> None:
    answers = {
        "loop.example": ["127.0.0.1"],
        "lan.example": ["93.184.216.34", "10.1.2.3"],
        "metadata.example": ["169.254.169.254"],
        "any.example": ["0.0.0.0"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "v6.example": ["fe80::1%eth0"],
        "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
    }

    def resolve(host: str) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    strict = WebhookGuard(resolve=resolve)
    for host in ("loop", "lan", "metadata", "any", "mapped", "v6"):
        refused = strict.refusal(f"https://{host}.example/hook")
        assert refused and "SAILPLANE_WEBHOOK_ALLOW_PRIVATE" in refused, host
    assert strict.refusal("https://public.example/hook") is None
    assert strict.refusal("ftp://public.example/hook") is not None
    assert strict.refusal("http:///nohost") is not None
    # Unresolvable: accepted when written (checked again at send), refused at send.
    assert strict.refusal("https://gone.example/h", unresolvable_ok=True) is None
    assert "does not resolve" in (strict.refusal("https://gone.example/h") or "")
    relaxed = WebhookGuard(allow_private=True, resolve=resolve)
    assert relaxed.refusal("http://loop.example/hook") is None
    assert relaxed.refusal("file:///etc/passwd") is not None
    # IP literals need no DNS.
    assert WebhookGuard().refusal("http://127.0.0.1:8080/hook") is not None
    assert WebhookGuard().refusal("http://[::1]/hook") is not None


def test_the_webhook_guard_allows_only_globally_routable_addresses() -> None:
    refused = [
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "100.100.100.200",  # a cloud metadata service in the shared range
        "192.0.0.8",  # IETF protocol assignments
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "ff02::1",
        "64:ff9b::a00:1",  # NAT64 form of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 form of 127.0.0.1
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix
        "2002:a00:1::1",  # 6to4 form of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 form of 169.254.169.254
        "::ffff:100.100.100.200",  # IPv4-mapped
        "240.0.0.1",  # reserved
    ]
    guard = WebhookGuard(resolve=lambda host: [host.removesuffix(".example").replace("-", ":")])
    for address in refused:
        assert guard.refusal(f"https://{address.replace(':', '-')}.example/h") is not None, address
    for address in ("93.184.216.34", "2606:2800:220:1::1", "64:ff9b::808:808", "2002:808:808::1"):
        assert guard.refusal(f"https://{address.replace(':', '-')}.example/h") is None, address
