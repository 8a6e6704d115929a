"""compose.yaml runs every worker Sailplane has, and nothing it does not have."""

from __future__ import annotations

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
