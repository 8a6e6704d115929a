"""Sailplane next to Prefect 3.9.1's server, on the same PostgreSQL, in alternating rounds.

    python3 dev.py bench --peers          (or: .venv/bin/python bench/peers/run.py)

Prefect goes into its own virtualenv (`bench/peers/.venv`, never the project's), its
server and a process worker polling every second run on a scratch database of the same
PostgreSQL (127.0.0.1:5432) as Sailplane's `serve` does. One load generator (this
process) measures both, alternating which goes first each round:

- run create at concurrency 1 (p50 and requests/s) and 8 (requests/s): Sailplane's held
  runs, Prefect's flow runs of a deployment on a pool without a worker, so neither starts
  executing what is created;
- read one run and list the newest 50 (requests/s at concurrency 8);
- create -> completed of a trivial run (`SELECT 1` on the local cluster; Prefect's
  trivial flow on a process work pool), one at a time.

In the same run, the limits the targets are stated against: the event store's own saves/s
(new aggregates saved by bare `eventsourcing` at concurrency 8) and a bare Litestar handler
reading one row. Prints each figure, the ratios and the machine's load; writes
bench/peers-results.json. Bounded: about 5 minutes on 2 cores, and never past --budget.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import _bare_app, percentile  # noqa: E402
from tests import services  # noqa: E402

PREFECT = "prefect==3.9.1"
PREFECT_VENV = HERE / ".venv"
RESULTS = ROOT / "bench" / "peers-results.json"


# --- the load generator --------------------------------------------------------------------


class Endpoint:
    """One HTTP server: requests over keep-alive connections, one per thread."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname or "", parts.port, parts.path
        self.headers = {"Content-Type": "application/json", **headers}
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        for reconnect in (False, True):
            conn = getattr(self._local, "conn", None)
            if conn is None or reconnect:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self._local.conn = conn
            try:
                conn.request(method, self.prefix + path, body=payload, headers=self.headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                if reconnect:
                    raise
                continue  # the server closed an idle keep-alive connection
            return response.status, json.loads(data) if data else None
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {data}")
        return data


def closed_loop(request: Callable[[], Any], *, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` threads repeating `request` for `seconds`: requests/s and latencies."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    deadline = time.perf_counter() + seconds

    def run(slot: int) -> None:
        while (start := time.perf_counter()) < deadline:
            request()
            latencies[slot].append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = [x for slot in latencies for x in slot]
    return {
        "rps": len(every) / elapsed,
        "p50_ms": percentile(every, 0.5),
        "p99_ms": percentile(every, 0.99),
    }


# --- the two systems, behind one interface ---------------------------------------------------


class Peer:
    name: str

    def create(self) -> str: ...
    def read(self, run_id: str) -> None: ...
    def list_newest(self) -> None: ...
    def run_to_completion(self) -> float: ...


def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.01)


class SailplanePeer(Peer):
    name = "Sailplane"

    def __init__(self, base_url: str, token: str) -> None:
        self.api = Endpoint(base_url + "/api/v1", {"Authorization": f"Bearer {token}"})
        from sailplane.commands.infra import local_ids

        team = self.api.ok("POST", "/org/teams", {"name": f"bench-{uuid.uuid4().hex[:6]}"})
        cluster = local_ids(team["team"]["organizationId"])[3]  # the built-in `local` cluster
        self.job = self.api.ok(
            "POST",
            "/workloads/jobs",
            {
                "jobKey": f"bench-{uuid.uuid4().hex[:6]}",
                "clusterId": cluster,
                "teamIds": [team["team"]["id"]],
                "config": {"sql": {"source": "SELECT 1"}},
            },
        )["id"]
        self.runs = f"/workloads/jobs/{self.job}/runs"

    def create(self) -> str:
        return str(self.api.ok("POST", self.runs, {"hold": True})["id"])

    def read(self, run_id: str) -> None:
        self.api.ok("GET", f"{self.runs}/{run_id}")

    def list_newest(self) -> None:
        self.api.ok("GET", f"{self.runs}?limit=50")

    def run_to_completion(self) -> float:
        start = time.perf_counter()
        run = self.api.ok("POST", self.runs, {})["id"]

        def done() -> bool:
            status = self.api.ok("GET", f"{self.runs}/{run}")["status"]
            if status in ("failed", "timeout", "cancelled", "dead_letter"):
                raise RuntimeError(f"Sailplane run {run} ended {status}")
            return status == "completed"

        wait_for(done, timeout=120, what=f"Sailplane run {run}")
        return (time.perf_counter() - start) * 1000


class PrefectPeer(Peer):
    name = "Prefect"

    def __init__(self, base_url: str, deployments: dict[str, str]) -> None:
        self.api = Endpoint(base_url + "/api", {})
        self.idle, self.run = deployments["peers-idle"], deployments["peers-run"]

    def create(self) -> str:
        return str(self.api.ok("POST", f"/deployments/{self.idle}/create_flow_run", {})["id"])

    def read(self, run_id: str) -> None:
        self.api.ok("GET", f"/flow_runs/{run_id}")

    def list_newest(self) -> None:
        self.api.ok("POST", "/flow_runs/filter", {"limit": 50, "sort": "EXPECTED_START_TIME_DESC"})

    def run_to_completion(self) -> float:
        start = time.perf_counter()
        run = self.api.ok("POST", f"/deployments/{self.run}/create_flow_run", {})["id"]

        def done() -> bool:
            state = self.api.ok("GET", f"/flow_runs/{run}")["state"]["type"]
            if state in ("FAILED", "CRASHED", "CANCELLED"):
                raise RuntimeError(f"Prefect flow run {run} ended {state}")
            return state == "COMPLETED"

        wait_for(done, timeout=120, what=f"Prefect flow run {run}")
        return (time.perf_counter() - start) * 1000


def measure(peer: Peer, seconds: float, completions: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    figures["create_c1"] = closed_loop(peer.create, concurrency=1, seconds=seconds)
    figures["create_c8"] = closed_loop(peer.create, concurrency=8, seconds=seconds)
    one = peer.create()
    figures["read_one"] = closed_loop(lambda: peer.read(one), concurrency=8, seconds=seconds)
    figures["list_50"] = closed_loop(peer.list_newest, concurrency=8, seconds=seconds)
    peer.run_to_completion()  # warm: the first run starts the local cluster or the worker's pull
    times = [peer.run_to_completion() for _ in range(completions)]
    figures["completed_p50_ms"] = percentile(times, 0.5)
    figures["completed_max_ms"] = max(times)
    figures["load_after"] = os.getloadavg()[0]
    return figures


# --- the limits, measured in the same run ----------------------------------------------------


def event_store_saves(database: Any, seconds: float) -> float:
    """New aggregates saved per second by bare `eventsourcing`, 8 threads (its own limit)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Thing(Aggregate):
        @event("Created")
        def __init__(self, name: str) -> None:
            self.name = name

    class Bare(Application):
        name = "bare"

    bare = Bare(env={**database.eventsourcing_env(pool_size=8), "ORIGINATOR_ID_TYPE": "uuid"})
    try:
        return closed_loop(lambda: bare.save(Thing("x")), concurrency=8, seconds=seconds)["rps"]
    finally:
        bare.close()


@contextmanager
def bare_litestar(database_url: str) -> Iterator[str]:
    """The bare Litestar app of bench/run.py in its own process (not this one's GIL)."""
    port = services.free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", database_url, "--port", str(port)],
        cwd=ROOT,
    )
    try:
        services.wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        services.stop(process, timeout=20)


def serve_bare(database_url: str, port: int) -> None:
    import uvicorn

    from sailplane.storage import Database

    app = _bare_app(Database.from_url(database_url))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- servers ----------------------------------------------------------------------------------


def prefect_python() -> Path:
    """Prefect's own virtualenv, made and filled on first use."""
    python = PREFECT_VENV / "bin" / "python"
    stamp = PREFECT_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != PREFECT:
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(PREFECT_VENV)
        print(f"installing {PREFECT} into {PREFECT_VENV} ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PREFECT],
            check=True,
        )
        stamp.write_text(PREFECT)
    return python


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[Any]]:
    with log.open("wb") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            yield child
        finally:
            services.stop(child, timeout=20)


def wait_healthy(url: str, child: subprocess.Popen[Any], log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{url} exited; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy within {timeout:.0f}s; see {log}")


@contextmanager
def sailplane_server(database: Any, workdir: Path) -> Iterator[SailplanePeer]:
    port, token = services.free_port(), "spk_" + secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "DATABASE_URL": database.conninfo,
        "SAILPLANE_BOOTSTRAP_TOKEN": token,
        "SAILPLANE_DATA_DIR": str(workdir / "sailplane"),
    }
    log = workdir / "sailplane.log"
    command = [sys.executable, "-m", "sailplane.cli", "serve", "--host", "127.0.0.1"]
    with process([*command, "--port", str(port)], env, log) as child:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base + "/healthz", child, log)
        yield SailplanePeer(base, token)


@contextmanager
def prefect_server(database: Any, workdir: Path) -> Iterator[PrefectPeer]:
    python = prefect_python()
    prefect = str(python.parent / "prefect")
    port = services.free_port()
    params = database.params
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(workdir / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": (
            f"postgresql+asyncpg://{params.get('user', 'postgres')}:"
            f"{params.get('password') or 'trust'}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{params['dbname']}"
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server_log, worker_log = workdir / "prefect-server.log", workdir / "prefect-worker.log"
    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process(command, env, server_log) as server:
        wait_healthy(api + "/health", server, server_log)
        setup = subprocess.run(
            [str(python), str(HERE / "prefect_setup.py")],
            env=env,
            cwd=HERE,
            check=True,
            capture_output=True,
            text=True,
        )
        deployments = json.loads(setup.stdout.strip().splitlines()[-1])
        worker = [prefect, "worker", "start", "--pool", "peers-run", "--type", "process"]
        with process(worker, env, worker_log):
            yield PrefectPeer(api.removesuffix("/api"), deployments)


# --- main ---------------------------------------------------------------------------------------


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "-"


def report(results: dict[str, Any]) -> None:
    s, p = results["Sailplane"], results["Prefect"]
    rows = [
        ("run create, concurrency 1, p50 ms", "create_c1", "p50_ms", True),
        ("run create, concurrency 1, req/s", "create_c1", "rps", False),
        ("run create, concurrency 8, req/s", "create_c8", "rps", False),
        ("read one run, concurrency 8, req/s", "read_one", "rps", False),
        ("list newest 50, concurrency 8, req/s", "list_50", "rps", False),
        ("create -> completed, p50 ms", "completed_p50_ms", None, True),
    ]
    print(f"\n{'figure':40} {'Sailplane':>10} {'Prefect':>10} {'ahead by':>9}")
    for label, key, field, lower_is_better in rows:
        ours = s[key] if field is None else s[key][field]
        theirs = p[key] if field is None else p[key][field]
        ahead = ratio(theirs, ours) if lower_is_better else ratio(ours, theirs)
        print(f"{label:40} {ours:10.1f} {theirs:10.1f} {ahead:>9}")
    limits = results["limits"]
    print(
        f"\nevent store's own limit: {limits['event_store_saves_per_s']:.0f} saves/s; "
        f"run create at concurrency 8 is {s['create_c8']['rps'] / limits['event_store_saves_per_s']:.0%} of it"
    )
    print(
        f"bare Litestar reading one row: {limits['bare_read_rps']:.0f} req/s; "
        f"read one run is {s['read_one']['rps'] / limits['bare_read_rps']:.0%} of it"
    )
    print(f"machine: {results['machine']}")


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds."""
    out: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if isinstance(value, dict):
            out[key] = {f: percentile([r[key][f] for r in rounds], 0.5) for f in value}
        else:
            out[key] = percentile([r[key] for r in rounds], 0.5)
    return out


def main() -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput figure")
    parser.add_argument("--completions", type=int, default=5, help="runs to completion per round")
    parser.add_argument("--budget", type=float, default=600.0, help="stop before this many s")
    parser.add_argument("--serve-bare", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.port)
        return 0
    began = time.monotonic()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_at_start": os.getloadavg(),
        }
    }
    workdir = Path(tempfile.mkdtemp(prefix="sailplane-peers-"))
    with (
        services.postgres_server() as server,
        services.fresh_database(server, "peers_sailplane") as ours,
        services.fresh_database(server, "peers_prefect") as theirs,
        services.fresh_database(server, "peers_limits") as limits,
    ):
        results["limits"] = {"event_store_saves_per_s": event_store_saves(limits, args.seconds)}
        with bare_litestar(limits.conninfo) as base:
            row = Endpoint(base, {}).ok("POST", "/rows", {"name": "bench"})
            bare = Endpoint(base, {})
            results["limits"]["bare_read_rps"] = closed_loop(
                lambda: bare.ok("GET", f"/rows/{row['id']}"), concurrency=8, seconds=args.seconds
            )["rps"]
        with (
            sailplane_server(ours, workdir) as sailplane,
            prefect_server(theirs, workdir) as prefect,
        ):
            rounds: dict[str, list[dict[str, Any]]] = {"Sailplane": [], "Prefect": []}
            for number in range(args.rounds):
                order = [sailplane, prefect] if number % 2 == 0 else [prefect, sailplane]
                for peer in order:
                    if time.monotonic() - began > args.budget:
                        print(f"budget of {args.budget:.0f}s spent; stopping", flush=True)
                        break
                    print(f"round {number + 1}: {peer.name}", flush=True)
                    rounds[peer.name].append(measure(peer, args.seconds, args.completions))
            results["rounds"] = rounds
            for name, measured in rounds.items():
                results[name] = median_of(measured)
    results["machine"]["load_at_end"] = os.getloadavg()
    results["machine"]["seconds"] = round(time.monotonic() - began)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    report(results)
    print(f"logs in {workdir}; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
