"""The OpenAPI document as its users use it: a client generated from it by
`openapi-python-client` works against the running server, the errors the server sends are
the ones each operation declares, and the documentation pages need no internet."""

from __future__ import annotations

import collections
import importlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import pytest

from sailplane.system import System
from tests.conftest import Org, local_cluster_id

PACKAGE = "sailplane_api_client"


@pytest.fixture(scope="module")
def document(api: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/schema/openapi.json", timeout=30)
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def generated(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The package `openapi-python-client` generates from the live document, imported."""
    root = tmp_path_factory.mktemp("client")
    (root / "openapi.json").write_text(httpx.Response(200, json=document).text)
    (root / "config.yaml").write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(root / "openapi.json"),
            "--config",
            str(root / "config.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation made it into the client (the generator skips what it cannot express).
    assert "Skipping" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield _Client(importlib.import_module)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class _Client:
    def __init__(self, load: Any) -> None:
        self._load = load

    def __getattr__(self, name: str) -> ModuleType:
        return self._load(f"{PACKAGE}.{name}")


def test_a_generated_client_creates_and_runs_a_job_and_reads_errors_as_values(
    generated: Any, api: str, system: System, org: Org, client: httpx.Client
) -> None:
    team = client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"})
    assert team.status_code == 201, team.text
    models = generated.models
    create_job = generated.__getattr__("api.jobs.create_job")
    describe_job = generated.__getattr__("api.jobs.describe_job")
    create_run = generated.__getattr__("api.job_runs.create_job_run")
    session = generated.client.AuthenticatedClient(base_url=api, token=org.token)

    body = models.JobCreateRequest(
        job_key=f"typed-{uuid.uuid4().hex[:8]}",
        cluster_id=local_cluster_id(system, org.id),
        team_ids=[team.json()["team"]["id"]],
        config=models.SqlJobConfig(sql=models.SqlWork(source="SELECT 1 AS one")),
    )
    job = create_job.sync(client=session, body=body)
    assert isinstance(job, models.Job), job
    assert (
        isinstance(job.config, models.SqlJobConfig) and job.config.sql.source == "SELECT 1 AS one"
    )

    run = create_run.sync(job.id, client=session, body=models.JobRunCreateRequest())
    assert isinstance(run, models.JobRun), run
    assert run.job_id == job.id and run.job_version == 1

    described = describe_job.sync(job.id, client=session)
    assert described.item.job_id == job.id
    assert [j.id for j in described.included.jobs] == [job.id]

    # Errors are typed values of the one Error model, with the server's code.
    missing = describe_job.sync("NOSUCHJOB1", client=session)
    assert isinstance(missing, models.Error) and missing.code == "job_not_found"
    again = create_job.sync_detailed(client=session, body=body)
    assert again.status_code == 409
    assert isinstance(again.parsed, models.Error) and again.parsed.message
    python = models.PythonJobConfig(python=models.PythonWork(source="print(1)"))
    both = {**python.to_dict(), **body.config.to_dict()}
    refused = create_job.sync_detailed(
        client=session, body=models.JobCreateRequest.from_dict({**body.to_dict(), "config": both})
    )
    assert refused.status_code == 422
    assert isinstance(refused.parsed, models.Error) and refused.parsed.field == "config"


def _declared(document: dict[str, Any], method: str, template: str, status: int) -> Any:
    responses = document["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} does not declare {status}"
    return responses[str(status)]["content"]["application/json"]["schema"]


def test_real_error_responses_match_what_each_operation_declares(
    document: dict[str, Any], api: str, client: httpx.Client, member_client: httpx.Client
) -> None:
    team = client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"}).json()
    team_id = team["team"]["id"]
    anonymous = httpx.Client(base_url=api + "/api/v1", timeout=30)
    jobs = "/api/v1/workloads/jobs"
    samples = [
        (anonymous.get("/workloads/jobs"), "GET", jobs),
        (client.get("/workloads/jobs/NOSUCHJOB1"), "GET", jobs + "/{job}"),
        (client.post("/workloads/jobs", json={"jobKey": 5}), "POST", jobs),
        (
            client.post(
                "/workloads/jobs",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            "POST",
            jobs,
        ),
        (
            client.post(
                "/workloads/jobs",
                json={
                    "jobKey": f"both-{uuid.uuid4().hex[:8]}",
                    "clusterId": "NOSUCHCLUS",
                    "config": {"sql": {"source": "SELECT 1"}, "python": {"source": "1"}},
                },
            ),
            "POST",
            jobs,
        ),
        (
            client.post(
                "/workloads/jobs", content=b"jobKey=x", headers={"Content-Type": "text/plain"}
            ),
            "POST",
            jobs,
        ),
        (member_client.delete(f"/org/teams/{team_id}"), "DELETE", "/api/v1/org/teams/{team}"),
        (
            client.patch(f"/org/teams/{team_id}", json={"name": ""}),
            "PATCH",
            "/api/v1/org/teams/{team}",
        ),
    ]
    seen: collections.Counter[int] = collections.Counter()
    for response, method, template in samples:
        assert response.status_code >= 400, response.text
        body = response.json()
        schema = _declared(document, method, template, response.status_code)
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
            body
        )
        seen[response.status_code] += 1
    assert {400, 401, 403, 404, 415, 422} <= set(seen), seen
    anonymous.close()


def test_the_document_names_schemas_uniquely_and_carries_the_package_version(
    document: dict[str, Any],
) -> None:
    assert document["info"]["version"] == version("sailplane")
    titles = collections.Counter(
        schema.get("title", name) for name, schema in document["components"]["schemas"].items()
    )
    assert [title for title, count in titles.items() if count > 1] == []
    # One error body per API dialect, referenced by every operation's error responses.
    errors = {
        (path.split("/")[1], response["content"]["application/json"]["schema"]["$ref"])
        for path, item in document["paths"].items()
        for operation in item.values()
        for status, response in operation.get("responses", {}).items()
        if int(status) >= 400
    }
    own = {"workspaces": "EnvelopeError", "v1": "RunQueueError"}  # seeds 002 and 003
    assert {ref for root, ref in errors if root not in own} == {"#/components/schemas/Error"}
    for root, shape in own.items():
        assert {ref for r, ref in errors if r == root} == {f"#/components/schemas/{shape}"}
    assert set(document["components"]["schemas"]["Error"]["required"]) == {"message", "code"}


@pytest.mark.parametrize("page", ["/schema/swagger", "/schema/redoc", "/schema"])
def test_documentation_pages_load_their_assets_from_the_server(api: str, page: str) -> None:
    html = httpx.get(api + page, timeout=30)
    assert html.status_code == 200 and "<html>" in html.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert urls and all(url.startswith("/schema/assets/") for url in urls), urls
    assert "https://" not in html.text.split("<body>")[0]
    for url in urls:
        asset = httpx.get(api + url, timeout=30)
        assert asset.status_code == 200 and asset.content, url
