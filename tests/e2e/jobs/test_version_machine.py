"""The version machine over HTTP against a small model: random sequences of create-draft,
patch-draft, discard, publish, create-version and activate-version give the same answers
and the same currentVersion, draftVersion, versions list and active configuration."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.e2e.jobs.conftest import create_job

TIMEOUTS = st.none() | st.integers(min_value=1, max_value=5)


class VersionsOverHttp(RuleBasedStateMachine):
    def __init__(self, client: httpx.Client, cluster: str, team: str) -> None:
        super().__init__()
        self.client = client
        job = create_job(client, cluster, team, timeoutSeconds=1)
        self.base = f"/workloads/jobs/{job['id']}"
        # the model: each version's timeoutSeconds, the published ones, the pointers
        self.timeouts: dict[int, int] = {1: 1}
        self.published: list[int] = [1]
        self.current, self.draft = 1, None

    def _body(self, timeout: int | None) -> dict[str, int]:
        return {} if timeout is None else {"timeoutSeconds": timeout}

    @rule(timeout=TIMEOUTS)
    def create_draft(self, timeout: int | None) -> None:
        response = self.client.post(f"{self.base}/draft", json=self._body(timeout))
        if self.draft is not None:
            assert response.status_code == 409
            return
        assert response.status_code == 201, response.text
        self.draft = max(self.published) + 1
        self.timeouts[self.draft] = timeout or self.timeouts[self.current]
        assert response.json()["version"] == self.draft
        assert response.json()["basedOnVersion"] == self.current

    @rule(timeout=TIMEOUTS)
    def patch_draft(self, timeout: int | None) -> None:
        response = self.client.patch(f"{self.base}/draft", json=self._body(timeout))
        if self.draft is None:
            assert response.status_code == 404
            return
        assert response.status_code == 200, response.text
        if timeout is not None:
            self.timeouts[self.draft] = timeout
        assert response.json()["timeoutSeconds"] == self.timeouts[self.draft]

    @rule()
    def discard(self) -> None:
        response = self.client.delete(f"{self.base}/draft")
        if self.draft is None:
            assert response.status_code == 404
            return
        assert response.status_code == 204
        del self.timeouts[self.draft]
        self.draft = None

    @rule()
    def publish(self) -> None:
        response = self.client.post(f"{self.base}/draft/publish")
        if self.draft is None:
            assert response.status_code == 400
            return
        assert response.status_code == 200, response.text
        self.published.append(self.draft)
        self.current, self.draft = self.draft, None

    @rule(timeout=TIMEOUTS)
    def create_version(self, timeout: int | None) -> None:
        response = self.client.post(f"{self.base}/versions", json=self._body(timeout))
        if self.draft is not None:
            assert response.status_code == 409
            return
        assert response.status_code == 201, response.text
        version = max(self.published) + 1
        self.timeouts[version] = timeout or self.timeouts[self.current]
        self.published.append(version)
        self.current = version

    @rule(version=st.integers(min_value=1, max_value=8))
    def activate(self, version: int) -> None:
        response = self.client.post(f"{self.base}/activate-version", json={"version": version})
        if self.draft is not None:
            assert response.status_code == 409
        elif version not in self.published:
            assert response.status_code == 404
        else:
            assert response.status_code == 200, response.text
            self.current = version

    @invariant()
    def the_job_matches_the_model(self) -> None:
        job = self.client.get(self.base).json()["included"]["jobs"][0]
        assert (job["currentVersion"], job["draftVersion"]) == (self.current, self.draft)
        assert job["timeoutSeconds"] == self.timeouts[self.current]
        listed = self.client.get(f"{self.base}/versions").json()
        assert [v["version"] for v in listed["items"]] == sorted(self.published)
        assert listed["total"] == len(self.published)


def test_the_version_machine_over_http(client: httpx.Client, cluster: str, team: str) -> None:
    run_state_machine_as_test(
        lambda: VersionsOverHttp(client, cluster, team),
        settings=settings(
            max_examples=12,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
