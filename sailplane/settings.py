"""Settings, from the environment and the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class ConfigurationError(Exception):
    """A setting Sailplane cannot use; the message names the variable or flag (one line)."""


def _number(env: Any, name: str, default: str, kind: type[int] | type[float]) -> Any:
    value = env.get(name, default)
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name}: {value!r} is not {what}") from None


def _count(env: Any, name: str, default: str) -> int:
    count: int = _number(env, name, default, int)
    if count < 0:
        raise ConfigurationError(f"{name}: {count} is below 0")
    return count


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".sailplane"))
    host: str = "127.0.0.1"
    port: int = 8000
    bootstrap_token: str | None = None
    organization_name: str = "Default Organization"
    owner_email: str = "owner@sailplane.local"
    owner_name: str = "Owner"
    owner_password: str | None = None  # the first owner's password (sign in with email + it)
    # How long a write waits for the views to show it before answering anyway.
    read_your_writes_timeout: float = 10.0
    # How long one append to the event log may wait for the log's lock, and may take.
    event_lock_timeout: float = 5.0
    event_statement_timeout: float = 30.0
    # After SIGTERM, how long requests in flight may finish before they are cut off.
    shutdown_timeout: float = 10.0
    kafka_partitions: int = 3
    kafka_replication_factor: int = 1
    kafka_retention_ms: int = -1  # of the topics the relay creates; -1 keeps every event
    kafka_log_level: str = "WARNING"  # of the kafka-python client's own logs
    # Fernet key(s) sealing secret settings in events; else `secrets.key` in data_dir.
    secrets_key: str | None = None
    # Where people reach this server (links in emails, the single sign-on callback).
    public_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "sailplane@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # The aws provider: an endpoint override for every boto3 client (an AWS-compatible
    # emulator such as a moto server), and the principal the connection template trusts
    # (else the account root of the credentials Sailplane runs with).
    aws_endpoint_url: str | None = None
    aws_principal: str | None = None
    # The scheduler: `missedSchedulePolicy: all` cap, when a slot counts as missed, tick length.
    scheduler_missed_cap: int = 10
    scheduler_late_tolerance: float = 60.0
    scheduler_tick: float = 1.0
    # Webhook channels may target loopback/private/link-local hosts (off: refused).
    webhook_allow_private: bool = False
    # How often the CPU and memory of executing runs are sampled, in seconds.
    run_metrics_interval: float = 5.0
    # The local executor's warm children: idle attempt processes started ahead (0: none).
    warm_children: int = 2
    # The run runtime: the largest telemetry item (a chunk, an output, a checkpoint, a state
    # value) in bytes, how often the work heartbeats, and after how long without a
    # heartbeat an executing attempt that sent one is `crashed`.
    runtime_max_item_bytes: int = 1 << 20
    runtime_heartbeat_seconds: float = 10.0
    runtime_crash_after_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls(
            database_url=env.get("DATABASE_URL") or None,
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            data_dir=Path(env.get("SAILPLANE_DATA_DIR", ".sailplane")),
            bootstrap_token=env.get("SAILPLANE_BOOTSTRAP_TOKEN") or None,
            organization_name=env.get("SAILPLANE_ORGANIZATION_NAME", cls.organization_name),
            owner_email=env.get("SAILPLANE_OWNER_EMAIL", cls.owner_email),
            owner_name=env.get("SAILPLANE_OWNER_NAME", cls.owner_name),
            owner_password=env.get("SAILPLANE_OWNER_PASSWORD") or None,
            read_your_writes_timeout=_number(
                env, "SAILPLANE_READ_YOUR_WRITES_TIMEOUT", "10", float
            ),
            event_lock_timeout=_number(env, "SAILPLANE_EVENT_LOCK_TIMEOUT", "5", float),
            event_statement_timeout=_number(env, "SAILPLANE_EVENT_STATEMENT_TIMEOUT", "30", float),
            shutdown_timeout=_number(env, "SAILPLANE_SHUTDOWN_TIMEOUT", "10", float),
            kafka_partitions=_number(env, "SAILPLANE_KAFKA_PARTITIONS", "3", int),
            kafka_replication_factor=_number(env, "SAILPLANE_KAFKA_REPLICATION_FACTOR", "1", int),
            kafka_retention_ms=_number(env, "SAILPLANE_KAFKA_RETENTION_MS", "-1", int),
            kafka_log_level=env.get("SAILPLANE_KAFKA_LOG_LEVEL", cls.kafka_log_level),
            secrets_key=env.get("SAILPLANE_SECRETS_KEY") or None,
            public_url=env.get("SAILPLANE_PUBLIC_URL") or None,
            smtp_host=env.get("SAILPLANE_SMTP_HOST") or None,
            smtp_port=_number(env, "SAILPLANE_SMTP_PORT", "25", int),
            smtp_from=env.get("SAILPLANE_SMTP_FROM", cls.smtp_from),
            smtp_username=env.get("SAILPLANE_SMTP_USERNAME") or None,
            smtp_password=env.get("SAILPLANE_SMTP_PASSWORD") or None,
            smtp_starttls=env.get("SAILPLANE_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
            aws_endpoint_url=env.get("SAILPLANE_AWS_ENDPOINT_URL") or None,
            aws_principal=env.get("SAILPLANE_AWS_PRINCIPAL") or None,
            scheduler_missed_cap=_number(env, "SAILPLANE_SCHEDULER_MISSED_CAP", "10", int),
            scheduler_late_tolerance=_number(
                env, "SAILPLANE_SCHEDULER_LATE_TOLERANCE", "60", float
            ),
            scheduler_tick=_number(env, "SAILPLANE_SCHEDULER_TICK", "1", float),
            webhook_allow_private=env.get("SAILPLANE_WEBHOOK_ALLOW_PRIVATE", "").lower()
            in ("1", "true", "yes"),
            run_metrics_interval=_number(env, "SAILPLANE_RUN_METRICS_INTERVAL", "5", float),
            warm_children=_count(env, "SAILPLANE_WARM_CHILDREN", "2"),
            runtime_max_item_bytes=_count(env, "SAILPLANE_RUNTIME_MAX_ITEM_BYTES", str(1 << 20)),
            runtime_heartbeat_seconds=_number(
                env, "SAILPLANE_RUNTIME_HEARTBEAT_SECONDS", "10", float
            ),
            runtime_crash_after_seconds=_number(
                env, "SAILPLANE_RUNTIME_CRASH_AFTER_SECONDS", "60", float
            ),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
