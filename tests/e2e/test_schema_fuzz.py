"""Requests generated from Sailplane's own OpenAPI document (schemathesis) never get a 500.

The schemathesis runner itself drives every declared operation through all of its phases:
`examples`, `coverage` (boundary and invalid values of every parameter), `fuzzing` (random
valid and invalid requests) and `stateful` (sequences that feed one response's ids into
the next request, as the document's links describe). Two fixed seeds make a failure
reproducible. The only check is that no response is a server error. A time budget per
seed keeps the whole test to a few minutes in CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Org

PHASES = "examples,coverage,fuzzing,stateful"
# Per seed: schemathesis stops fuzzing and stateful runs when this budget is spent.
SECONDS_PER_SEED = 75


@pytest.mark.parametrize("seed", [20261206, 4242])
def test_generated_requests_never_cause_server_errors(
    api: str, org: Org, seed: int, tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from schemathesis.cli import schemathesis; schemathesis()",
            "run",
            f"{api}/schema/openapi.json",
            "--url",
            api,
            "--phases",
            PHASES,
            "--checks",
            "not_a_server_error",
            "--seed",
            str(seed),
            "--max-examples",
            "15",
            "--max-time",
            str(SECONDS_PER_SEED),
            "--workers",
            "1",
            "--no-color",
            "--suppress-health-check",
            "all",
            "--header",
            f"Authorization: Bearer {org.token}",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=SECONDS_PER_SEED * 3,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
