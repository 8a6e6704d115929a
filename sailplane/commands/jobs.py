"""Jobs use cases, part of the `Workloads` application (`workloads.commands.create_job`...).

What a job's rules need beyond the Job aggregate:
- a usable cluster (the infrastructure context's workload cluster, `externalStatus`
  `active`) for every version that becomes active: at create, publish, create-version
  and activate-version (the `Clusters` port; a draft may name any existing cluster);
- `jobKey` unique per organization (a `UniqueKey` claimed with the job, moved on rename,
  released on delete);
- `dependsOn[].jobKey` naming existing jobs of the organization without a cycle through
  the active versions' dependencies (checked against the aggregates, not a view);
- `config.sql.queryId` naming a saved query of the organization.

Deleting a job emits `Job.Deleted`; the runs context reacts to it (its consumer cancels
the job's pending and active runs), so this module knows nothing of runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from sailplane.commands.base import SailplaneApplication
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.ids import new_id
from sailplane.domain.jobs import Job, check_job_key, dependency_keys, query_id_of
from sailplane.domain.uniqueness import UniqueKey
from sailplane.domain.workloads import SavedQuery

if TYPE_CHECKING:
    from sailplane.domain.identity import Team

JOB_KEY = "job-key"


class Clusters(Protocol):
    def cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        """The workload cluster, whatever its status, or None."""

    def usable_cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        """The workload cluster when jobs can run on it (externalStatus `active`), else None."""


class NoClusters:
    """No infrastructure context wired: no cluster exists, so no job can be created."""

    def cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        return None

    def usable_cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        return None


class JobUseCases(SailplaneApplication):
    """The base of `Workloads`; `clusters` is wired by the composition root."""

    clusters: Clusters

    if TYPE_CHECKING:  # team helpers that `Workloads` shares with catalogs and queries

        def _teams(self, team_ids: Iterable[str], by: Actor) -> list[Team]: ...
        def _grant(self, resource: Any, team_ids: list[str], by: Actor) -> int: ...
        def _revoke(self, resource: Any, team_id: str, by: Actor) -> int: ...

    def create_job(
        self,
        *,
        job_key: str,
        description: str | None,
        status: str,
        spec: dict[str, Any],
        team_ids: list[str],
        by: Actor,
    ) -> tuple[str, int]:
        """A job and its version 1, published and active, on a usable cluster."""
        teams = self._teams(team_ids, by)
        job_id = new_id()
        job = Job.create(
            id=job_id,
            job_key=job_key,
            description=description,
            status=status,
            spec=spec,
            team_ids=[t.id for t in teams],
            by=by,
            at=self.clock(),
        )
        self._check_active_spec(job, job.active_spec, by)
        conflict = _key_taken(job.job_key)
        key = self._claim_key(JOB_KEY, job.job_key, job_id, by=by, conflict=conflict)
        return job_id, self._commit(job, key, conflict=conflict)

    def update_job(
        self, job_id: str, changes: dict[str, Any], *, expected_version: int | None, by: Actor
    ) -> int:
        """Metadata only (`job_key`, `description`, `status`); never the version."""
        return self.revise_job(job_id, changes, {}, expected_version=expected_version, by=by)

    def revise_job(
        self,
        job_id: str,
        changes: dict[str, Any],
        overrides: dict[str, Any],
        *,
        expected_version: int | None = None,
        by: Actor,
    ) -> int:
        """In one write: metadata `changes` (`job_key`, `description`, `status`) and, when
        `overrides` are given, a new version with them, published and active at once."""
        job = self._job(job_id, by)
        old_key = job.job_key
        if changes or expected_version is not None:
            job.update_metadata(changes, expected_version=expected_version, by=by, at=self.clock())
        if overrides:
            version = job.create_version(overrides, by=by, at=self.clock())
            self._check_active_spec(job, job.spec(version), by)
        keys = []
        conflict = None
        if job.job_key != old_key:
            conflict = _key_taken(job.job_key)
            keys.append(self._claim_key(JOB_KEY, job.job_key, job.id, by=by, conflict=conflict))
            keys.append(self._release_key(JOB_KEY, old_key, job.id, by=by))
        return self._commit(job, *keys, conflict=conflict)

    def delete_job(self, job_id: str, *, by: Actor) -> int:
        """Emits `Job.Deleted`; the runs context cancels the job's runs in reaction."""
        job = self._job(job_id, by)
        job.delete(by=by, at=self.clock())
        return self._commit(job, self._release_key(JOB_KEY, job.job_key, job.id, by=by))

    def create_job_draft(self, job_id: str, overrides: dict[str, Any], *, by: Actor) -> int:
        job = self._job(job_id, by)
        job.create_draft(overrides, by=by, at=self.clock())
        self._check_draft_spec(job, overrides, by)
        return self._commit(job)

    def update_job_draft(self, job_id: str, changes: dict[str, Any], *, by: Actor) -> int:
        job = self._job(job_id, by)
        job.update_draft(changes, by=by, at=self.clock())
        self._check_draft_spec(job, changes, by)
        return self._commit(job)

    def discard_job_draft(self, job_id: str, *, by: Actor) -> int:
        job = self._job(job_id, by)
        job.discard_draft(by=by, at=self.clock())
        return self._commit(job)

    def publish_job_draft(self, job_id: str, *, by: Actor) -> int:
        job = self._job(job_id, by)
        version = job.publish_draft(by=by, at=self.clock())
        self._check_active_spec(job, job.spec(version), by)
        return self._commit(job)

    def create_job_version(
        self, job_id: str, overrides: dict[str, Any], *, by: Actor
    ) -> tuple[int, int]:
        """(the new version's number, position): created, published and active at once."""
        job = self._job(job_id, by)
        version = job.create_version(overrides, by=by, at=self.clock())
        self._check_active_spec(job, job.spec(version), by)
        return version, self._commit(job)

    def activate_job_version(self, job_id: str, version: int, *, by: Actor) -> int:
        job = self._job(job_id, by)
        job.activate_version(version, by=by, at=self.clock())
        self._check_active_spec(job, job.spec(version), by)
        return self._commit(job)

    def grant_job_teams(self, job_id: str, team_ids: list[str], *, by: Actor) -> int:
        return self._grant(self._job(job_id, by), team_ids, by)

    def revoke_job_team(self, job_id: str, team_id: str, *, by: Actor) -> int:
        return self._revoke(self._job(job_id, by), team_id, by)

    # --- the rules that look beyond the aggregate -------------------------------------------

    def _check_draft_spec(self, job: Job, written: dict[str, Any], by: Actor) -> None:
        """What a draft write names must exist: its cluster, query and dependencies."""
        spec = job.draft_spec or {}
        if (
            "cluster_id" in written
            and self.clusters.cluster(by.organization_id, spec["cluster_id"]) is None
        ):
            raise InvalidValueError(
                f"Cluster {spec['cluster_id']} was not found.",
                field="clusterId",
                code="cluster_not_found",
            )
        self._check_references(job, spec, by)

    def _check_active_spec(self, job: Job, spec: dict[str, Any], by: Actor) -> None:
        """A version that becomes active needs a usable cluster and valid references."""
        cluster_id = spec["cluster_id"]
        if self.clusters.usable_cluster(by.organization_id, cluster_id) is None:
            found = self.clusters.cluster(by.organization_id, cluster_id)
            raise InvalidValueError(
                f"Cluster {cluster_id} was not found."
                if found is None
                else f"Cluster {cluster_id} is not active (it is {found.get('external_status')}); "
                "jobs run only on active clusters.",
                field="clusterId",
                code="cluster_not_found" if found is None else "cluster_not_active",
            )
        self._check_references(job, spec, by)

    def _check_references(self, job: Job, spec: dict[str, Any], by: Actor) -> None:
        query_id = query_id_of(spec)
        if query_id is not None and self._active(SavedQuery, query_id, by) is None:
            raise InvalidValueError(
                f"Saved query {query_id} was not found.",
                field="config.sql.queryId",
                code="query_not_found",
            )
        self._check_dependencies(job, dependency_keys(spec), by)

    def _check_dependencies(self, job: Job, keys: list[str], by: Actor) -> None:
        """Every key names a job of the organization, and no chain of active versions'
        dependencies leads back to this job (409)."""
        for i, key in enumerate(keys):
            if key != job.job_key and self._job_by_key(key, by) is None:
                raise InvalidValueError(
                    f"dependsOn[{i}].jobKey {key!r} names no job of this organization.",
                    field=f"dependsOn[{i}].jobKey",
                    code="dependency_not_found",
                )
        seen: set[str] = set()
        stack = [(key, [job.job_key, key]) for key in keys]
        while stack:
            key, path = stack.pop()
            if key == job.job_key:
                raise ConflictError(
                    f"dependsOn would make a cycle: {' -> '.join(path)}.",
                    code="dependency_cycle",
                )
            if key in seen:
                continue
            seen.add(key)
            other = self._job_by_key(key, by)
            if other is not None:
                stack.extend((k, [*path, k]) for k in dependency_keys(other.active_spec))

    def _job_by_key(self, job_key: str, by: Actor) -> Job | None:
        try:
            check_job_key(job_key)
        except InvalidValueError:
            return None
        index = self._find(UniqueKey, UniqueKey.id_for(JOB_KEY, by.organization_id, job_key))
        if index is None or index.owner_id is None:
            return None
        return self._active(Job, index.owner_id, by)

    def _active(self, cls: type[Any], aggregate_id: str, by: Actor) -> Any:
        found = self._find(cls, aggregate_id)
        if found is None or found.organization_id != by.organization_id or found.deleted:
            return None
        return found

    def _job(self, job_id: str, by: Actor) -> Job:
        return self._load(Job, job_id, organization_id=by.organization_id, kind="job")


def _key_taken(job_key: str) -> ConflictError:
    return ConflictError(f"A job with jobKey {job_key!r} already exists.", code="job_key_taken")
