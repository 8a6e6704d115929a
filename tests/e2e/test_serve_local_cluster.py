"""First start of `sailplane serve`: the `local` cluster is active, a session on it takes a
Spark Connect client, and shutting down stops its Sail server."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.e2e.test_infra import spark_select_one
from tests.e2e.test_serve import serving


def _sail_servers_on(port: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "spark" in cmdline and "server" in cmdline and str(port) in cmdline:
            found.append(proc.info["pid"])
    return found


def test_first_start_has_an_active_local_cluster_that_runs_sessions(open_tmp_path: Path) -> None:
    with serving(open_tmp_path / "data") as client:
        clusters = client.get("/me/clusters").json()
        (cluster,) = clusters["included"]["clusters"]
        assert (cluster["name"], cluster["externalStatus"]) == ("local", "active")
        session = client.post("/workloads/sessions", json={"name": "first"}).json()
        deadline = time.monotonic() + 60
        while (described := client.get(f"/workloads/sessions/{session['id']}").json())[
            "status"
        ] == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert described["status"] == "active", described
        assert described["workloadId"] == cluster["id"]
        endpoint = described["connectionInfo"]["grpcEndpoint"]
        assert spark_select_one(endpoint) == [1]
        port = int(endpoint.rsplit(":", 1)[1])
        assert _sail_servers_on(port)
    assert _sail_servers_on(port) == []
