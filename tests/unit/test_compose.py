"""compose.yaml runs every worker Sailplane has, and nothing it does not have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from sailplane.system import System

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_compose_has_one_service_per_worker() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    workers = [
        service["command"][1]
        for service in services.values()
        if service.get("command", [None])[0] == "worker"
    ]
    assert sorted(workers) == sorted(System.worker_names())
    api = services["api"]["command"]
    assert api[0] == "serve" and "--no-workers" in api


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against the compose-spec schema the package ships (no network)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_follows_the_compose_specification(tmp_path: Path) -> None:
    result = _check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check does refuse what the specification does not allow.
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["healthchek"] = broken["services"]["api"].pop("healthcheck")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert _check(tmp_path / "compose.yaml").returncode == 1


def test_compose_keeps_kafka_data_and_checks_the_api_readiness() -> None:
    document = yaml.safe_load(COMPOSE.read_text())
    services = document["services"]
    kafka = services["kafka"]
    data_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{data_dir}" in kafka["volumes"] and "kafka-data" in document["volumes"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    environment = services["api"]["environment"]
    # Replication and retention are settings, by default 1 and forever.
    assert environment["SAILPLANE_KAFKA_REPLICATION_FACTOR"].endswith(":-1}")
    assert environment["SAILPLANE_KAFKA_RETENTION_MS"].endswith(":--1}")
