"""The work's first call to the run runtime, made before the views have its dispatch.

A warm child starts the work within milliseconds of the dispatch being saved; under load
the views can be behind it. The runtime must not take that lag for an attempt that is over
(401): a child spawned by an agent failed this way, and its parent with it. No dispatcher
runs in this module: the test saves the dispatch itself while the runs view is held back.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from sailplane.domain.base import Actor
from sailplane.system import System
from tests.conftest import Org
from tests.e2e import test_job_runs as job_runs_tests
from tests.e2e.test_job_runs import Jobs

local_cluster = job_runs_tests.local_cluster
team = job_runs_tests.team


def test_the_works_first_call_waits_for_the_views_to_reach_its_dispatch(
    api: str, org: Org, system: System, client: httpx.Client, local_cluster: str, team: str
) -> None:
    job = Jobs(client, local_cluster, team).create(python="print('never started')")
    created = client.post(f"/workloads/jobs/{job['id']}/runs", json={})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    token = system.runs.tokens.mint(org.id, run_id, 1)
    answers: list[httpx.Response] = []

    def first_call() -> None:
        with httpx.Client(base_url=api, timeout=60) as work:
            answers.append(
                work.get("/v1/runtime/context", headers={"Authorization": f"Bearer {token}"})
            )

    # Hold the runs view back: its projection cannot write the dispatch until this ends.
    with system.pool.connection() as held, held.transaction():
        held.execute(f"LOCK TABLE {system.runs.view.sql('{job_runs}')} IN EXCLUSIVE MODE")
        dispatched = system.runs.commands.dispatch_run(
            run_id, executor="local", by=Actor.system("dispatcher", org.id)
        )
        assert dispatched.action == "submit"
        caller = threading.Thread(target=first_call)
        caller.start()
        time.sleep(0.5)  # the call has read the view as it was (queued) by now
        assert not answers, answers[0].text if answers else ""
    caller.join(timeout=60)
    [answer] = answers
    assert answer.status_code == 200, answer.text
    context: dict[str, Any] = answer.json()
    assert (context["run_id"], context["attempt"]) == (run_id, 1)
