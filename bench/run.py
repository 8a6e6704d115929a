"""Sailplane benchmarks: each figure next to a baseline measured in the same run.

    python3 dev.py bench [--quick]        (or: .venv/bin/python bench/run.py)

Uses the PostgreSQL at 127.0.0.1:5432 when it answers (a scratch database per run),
else an embedded one. Prints a table and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- 1. command saves per second ---------------------------------------------------------


def bench_commands(database: Any, n: int) -> dict[str, Any]:
    """Load-change-save loops: a Sailplane use case vs the same loop in bare eventsourcing."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    from sailplane.commands.identity import Identity
    from sailplane.domain.base import Actor
    from sailplane.storage import EventLog

    class Counter(Aggregate):
        @event("Created")
        def __init__(self) -> None:
            self.value = 0

        @event("Changed")
        def change(self, value: int) -> None:
            self.value = value

    class Bare(Application):
        name = "bare"

    # Changes are spread over 100 aggregates on both sides, so replaying an aggregate's
    # history on load stays short and the figure is about the save path.
    width = 100
    bare = Bare(env={**database.eventsourcing_env(), "ORIGINATOR_ID_TYPE": "uuid"})
    counters = [Counter() for _ in range(width)]
    bare.save(*counters)
    event_log = EventLog(database)
    identity = Identity(event_log)
    founded = identity.found_organization(name="Bench", owner_email="b@example.com", owner_name="B")
    actor = Actor("member", founded.owner_member_id, founded.organization_id)
    team_ids = [
        identity.create_team(name=f"bench-{i}", default_role_id=None, by=actor)[0]
        for i in range(width)
    ]
    roles = ["TEAMADMIN", "TEAMMEMBER"]

    def bare_loop() -> None:
        for i in range(n):
            aggregate = bare.repository.get(counters[i % width].id)
            aggregate.change(i)
            bare.save(aggregate)

    def ours_loop() -> None:
        for i in range(n):
            identity.update_team(
                team_ids[i % width], name=None, default_role_id=roles[(i // width) % 2], by=actor
            )

    bare_loop()  # warm both paths (prepared statements, pools)
    ours_loop()
    results = {}
    for label, loop in (("bare", bare_loop), ("sailplane", ours_loop), ("bare_again", bare_loop)):
        start = time.perf_counter()
        loop()
        results[label] = n / (time.perf_counter() - start)
    baseline = (results["bare"] + results["bare_again"]) / 2
    event_log.close()
    bare.close()
    return {
        "sailplane_saves_per_s": results["sailplane"],
        "bare_saves_per_s": baseline,
        "ratio": results["sailplane"] / baseline,
    }


# --- 2. projection rebuild -----------------------------------------------------------------


def bench_rebuild(database: Any, teams: int) -> dict[str, Any]:
    """Rebuild the teams view from a log of `teams * 4` events; baseline: one transaction per event."""
    from eventsourcing.persistence import StoredEvent, Tracking

    from sailplane.commands.identity import Identity
    from sailplane.domain.base import Actor
    from sailplane.domain.identity import Team
    from sailplane.domain.ids import new_id
    from sailplane.projections.identity import TeamsProjection, TeamsView
    from sailplane.projections.runner import prepare_view, rebuild
    from sailplane.storage import EventLog

    event_log = EventLog(database)
    identity = Identity(event_log)
    founded = identity.found_organization(
        name="Rebuild", owner_email="r@example.com", owner_name="R"
    )
    actor = Actor("member", founded.owner_member_id, founded.organization_id)
    batch = []
    for i in range(teams):
        team = Team.create(
            id=new_id(), name=f"team-{i}", default_role_id=None, by=actor, at=identity.clock()
        )
        for j in range(3):
            team.update(name=f"team-{i}-{j}", default_role_id=None, by=actor, at=identity.clock())
        batch.append(team)
        if len(batch) == 500:
            identity.save(*batch)
            batch = []
    if batch:
        identity.save(*batch)
    head = event_log.head()
    pool = database.pool(name="bench", max_size=4)
    prepare_view(event_log, TeamsProjection, pool)

    start = time.perf_counter()
    rebuild(event_log, TeamsProjection, pool, batch_size=2000)
    batched = head / (time.perf_counter() - start)

    # Baseline: the same projection, one transaction per event (what the library's runner does).
    sample = min(head, 3000)
    view = TeamsView(pool, suffix="__baseline")
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        view.drop_tables(cur)
        view.create_tables(cur)
    projection = TeamsProjection(view)
    notifications = event_log.recorder.select_notifications(start=1, limit=sample)
    start = time.perf_counter()
    for n in notifications:
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cur, view.batch(cur):
            if TeamsProjection.handles(n.topic):
                projection.process_event(
                    event_log.mapper.to_domain_event(
                        StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
                    ),
                    Tracking("sailplane", n.id),
                )
            view.set_position(cur, n.id)
    per_event = len(notifications) / (time.perf_counter() - start)
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        view.drop_tables(cur)
    pool.close()
    event_log.close()
    return {
        "events": head,
        "rebuild_events_per_s": batched,
        "per_event_tx_events_per_s": per_event,
        "ratio": batched / per_event,
    }


# --- 3. read-your-writes ---------------------------------------------------------------------


def bench_read_your_writes(database: Any, n: int) -> dict[str, Any]:
    """Save-to-visible lag of the views, and POST-then-GET over HTTP vs a bare Litestar pair."""
    import httpx

    from sailplane.http.app import create_app
    from tests.conftest import found_org, running_system

    with running_system(database) as system:
        org = found_org(system)
        lags = []
        for i in range(n):
            _, position = system.identity.commands.create_team(
                name=f"ryw-{i}", default_role_id=None, by=org.owner
            )
            saved = time.perf_counter()
            system.wait_for_views(position)
            lags.append((time.perf_counter() - saved) * 1000)
        with services.api_server(create_app(system)) as base:
            ours = _post_then_get(
                httpx.Client(base_url=base, headers={"Authorization": f"Bearer {org.token}"}),
                lambda i: ("/api/v1/org/teams", {"name": f"http-{i}"}),
                lambda body: f"/api/v1/org/teams/{body['team']['id']}",
                n,
            )
        with services.api_server(_bare_app(database)) as base:
            bare = _post_then_get(
                httpx.Client(base_url=base),
                lambda i: ("/rows", {"name": f"bare-{i}"}),
                lambda body: f"/rows/{body['id']}",
                n,
            )
    return {
        "view_lag_p50_ms": percentile(lags, 0.5),
        "view_lag_p99_ms": percentile(lags, 0.99),
        "post_get_p50_ms": percentile(ours, 0.5),
        "post_get_p99_ms": percentile(ours, 0.99),
        "bare_post_get_p50_ms": percentile(bare, 0.5),
        "bare_post_get_p99_ms": percentile(bare, 0.99),
        "ratio_p50": percentile(ours, 0.5) / percentile(bare, 0.5),
    }


def _post_then_get(
    client: Any, post: Callable[[int], tuple[str, dict]], get: Callable[[dict], str], n: int
) -> list[float]:
    timings = []
    with client:
        for i in range(n + 20):
            path, body = post(i)
            start = time.perf_counter()
            created = client.post(path, json=body)
            assert created.status_code == 201, created.text
            read = client.get(get(created.json()))
            assert read.status_code == 200, read.text
            if i >= 20:  # warm-up
                timings.append((time.perf_counter() - start) * 1000)
    return timings


def _bare_app(database: Any) -> Any:
    """The baseline: Litestar + msgspec + one psycopg row per request, nothing else."""
    import uuid

    import msgspec
    from litestar import Litestar, get, post

    pool = database.pool(name="bare", max_size=10)
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (id text PRIMARY KEY, name text NOT NULL)"
        )

    class Row(msgspec.Struct):
        id: str
        name: str

    class NewRow(msgspec.Struct):
        name: str

    @post("/rows", sync_to_thread=True)
    def create(data: NewRow) -> Row:
        row = Row(id=uuid.uuid4().hex[:10], name=data.name)
        with pool.connection() as conn:
            conn.execute("INSERT INTO bench_rows VALUES (%s, %s)", (row.id, row.name))
        return row

    @get("/rows/{row_id:str}", sync_to_thread=True)
    def describe(row_id: str) -> Row:
        with pool.connection() as conn:
            found = conn.execute(
                "SELECT id, name FROM bench_rows WHERE id = %s", (row_id,)
            ).fetchone()
        return Row(id=found["id"], name=found["name"])

    return Litestar([create, describe], signature_namespace={"NewRow": NewRow, "Row": Row})


# --- 4. GET describe throughput ----------------------------------------------------------------


def bench_describe_throughput(database: Any, seconds: float) -> dict[str, Any]:
    """Requests/s of GET /org/teams/{id} vs a bare Litestar handler reading one row."""
    import httpx

    from sailplane.http.app import create_app
    from tests.conftest import found_org, running_system

    with running_system(database) as system:
        org = found_org(system)
        team_id, position = system.identity.commands.create_team(
            name="throughput", default_role_id=None, by=org.owner
        )
        system.wait_for_views(position)
        with services.api_server(create_app(system)) as base:
            ours = _load(
                base + f"/api/v1/org/teams/{team_id}",
                {"Authorization": f"Bearer {org.token}"},
                seconds,
            )
        with services.api_server(_bare_app(database)) as base:
            row = httpx.post(base + "/rows", json={"name": "throughput"}).json()
            bare = _load(base + f"/rows/{row['id']}", {}, seconds)
    return {"sailplane_rps": ours, "bare_rps": bare, "ratio": ours / bare}


def _load_worker(url: str, headers: dict[str, str], seconds: float, threads: int, out: Any) -> None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    counts = [0] * threads

    def run(slot: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            conn.request("GET", parts.path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[slot] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(sum(counts))


def _load(url: str, headers: dict[str, str], seconds: float) -> float:
    queue: Any = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_load_worker, args=(url, headers, seconds, 8, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    }
    with services.postgres_server() as server:
        runs: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
            ("commands", lambda db: bench_commands(db, int(2000 * scale))),
            ("rebuild", lambda db: bench_rebuild(db, int(5000 * scale))),
            ("read_your_writes", lambda db: bench_read_your_writes(db, int(500 * scale))),
            ("describe_throughput", lambda db: bench_describe_throughput(db, 5.0 * scale + 1)),
        ]
        for name, run in runs:
            with services.fresh_database(server, prefix="sailplane_bench") as database:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                results[name] = run(database)
    print_table(results)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    return 0


def print_table(results: dict[str, Any]) -> None:
    c, r, w, t = (
        results["commands"],
        results["rebuild"],
        results["read_your_writes"],
        results["describe_throughput"],
    )
    rows = [
        (
            "command saves/s (load, change, save)",
            f"{c['sailplane_saves_per_s']:.0f}",
            f"bare eventsourcing {c['bare_saves_per_s']:.0f}",
            f"{c['ratio']:.2f}",
        ),
        (
            f"view rebuild events/s ({r['events']} events)",
            f"{r['rebuild_events_per_s']:.0f}",
            f"one tx per event {r['per_event_tx_events_per_s']:.0f}",
            f"{r['ratio']:.1f}",
        ),
        (
            "save -> view visible, p50 / p99 ms",
            f"{w['view_lag_p50_ms']:.2f} / {w['view_lag_p99_ms']:.2f}",
            "",
            "",
        ),
        (
            "POST then GET over HTTP, p50 / p99 ms",
            f"{w['post_get_p50_ms']:.2f} / {w['post_get_p99_ms']:.2f}",
            f"bare Litestar {w['bare_post_get_p50_ms']:.2f} / {w['bare_post_get_p99_ms']:.2f}",
            f"{w['ratio_p50']:.2f}",
        ),
        (
            "GET describe requests/s",
            f"{t['sailplane_rps']:.0f}",
            f"bare Litestar {t['bare_rps']:.0f}",
            f"{t['ratio']:.2f}",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in [("benchmark", "Sailplane", "baseline (same run)", "ratio"), *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i < len(widths) else cell for i, cell in enumerate(row)
            )
        )


if __name__ == "__main__":
    sys.exit(main())
