"""`sailplane.client`: a small Python client for jobs and runs, typed with msgspec.

    from sailplane.client import Client

    with Client("http://127.0.0.1:8000", token="sp_...") as sp:   # or Client.from_profile()
        team = sp.teams.create("Data Platform")
        job = sp.jobs.create({"jobKey": "hello", "teamIds": [team.id],
                              "config": {"sql": {"source": "SELECT 1"}}})
        run = sp.jobs.run(job.id)
        for line in sp.runs.follow_logs(job.id, run.id):
            print(line.line)
        print(sp.runs.get(job.id, run.id).status)

Every error the server answers becomes an `ApiError` carrying its `message`, `code` and
HTTP `status`; a server that cannot be reached raises `ConnectionFailed`. `sailplane` the
command line is built on this module (sailplane/client_cli.py).

Profiles (`sailplane login`) are kept in `$SAILPLANE_CONFIG`, else
`$XDG_CONFIG_HOME/sailplane/profiles.json` (`~/.config/...`), with file mode 0600;
`SAILPLANE_URL` and `SAILPLANE_TOKEN` override the chosen profile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import msgspec

# The run shapes the server answers with, as it defines them (no second copy to drift).
from sailplane.http.shapes import JobRunEvent as RunEvent
from sailplane.http.shapes import JobRunLogLine as LogLine

API_PREFIX = "/api/v1"
TERMINAL_STATUSES = frozenset(
    {"completed", "failed", "timeout", "cancelled", "skipped", "dead_letter"}
)
STREAM_RECONNECTS = 3
T = TypeVar("T")


class ApiError(Exception):
    """The server answered an error: `{"message", "code"}` and the HTTP status."""

    def __init__(self, status: int, message: str, code: str, field: str | None = None) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status, self.message, self.code, self.field = status, message, code, field


class ConnectionFailed(Exception):
    """The server could not be reached."""


# --- shapes (the fields a client needs; the server may send more) ----------------------------


class _Shape(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class Team(_Shape):
    id: str
    name: str


class Cluster(_Shape):
    id: str
    name: str
    external_cluster_id: str
    external_status: str
    provider: str


class Job(_Shape):
    id: str
    job_key: str
    status: str
    version: int
    cluster_id: str
    description: str | None = None
    config: dict[str, Any] = {}
    cron_expression: str | None = None
    cron_timezone: str | None = None
    next_run_at: str | None = None
    last_scheduled_at: str | None = None
    created_at: str | None = None


class JobRun(_Shape):
    id: str
    job_id: str
    job_version: int
    status: str
    status_reason: str | None = None
    status_message: str | None = None
    attempt: int = 1
    trigger: str = "manual"
    scheduled_for: str | None = None
    created_at: str | None = None
    finished_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class _Items(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    marker: str | None = None


class _JobsIncluded(msgspec.Struct, kw_only=True):
    jobs: list[Job]


class _JobListing(msgspec.Struct, kw_only=True):
    included: _JobsIncluded
    marker: str | None = None


class _TeamItem(msgspec.Struct, kw_only=True):
    team: Team


class _ClustersIncluded(msgspec.Struct, kw_only=True):
    clusters: list[Cluster]


class _ClusterListing(msgspec.Struct, kw_only=True):
    included: _ClustersIncluded
    marker: str | None = None


class _Error(msgspec.Struct):
    message: str = "the server answered an error"
    code: str = "error"
    field: str | None = None


# --- profiles ---------------------------------------------------------------------------------


class Profile(msgspec.Struct, kw_only=True):
    url: str
    token: str


class ProfileFile(msgspec.Struct, kw_only=True):
    default: str | None = None
    profiles: dict[str, Profile] = {}


class ConfigError(Exception):
    """No usable profile or settings for the client."""


def config_path() -> Path:
    if os.environ.get("SAILPLANE_CONFIG"):
        return Path(os.environ["SAILPLANE_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sailplane" / "profiles.json"


def read_profiles(path: Path | None = None) -> ProfileFile:
    path = path or config_path()
    if not path.exists():
        return ProfileFile()
    try:
        return msgspec.json.decode(path.read_bytes(), type=ProfileFile)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"SAILPLANE_CONFIG: cannot read profiles from {path}: {exc}") from None


def save_profile(name: str, profile: Profile, path: Path | None = None) -> Path:
    """Add or replace a profile (the default one from now on); the file is mode 0600."""
    path = path or config_path()
    stored = read_profiles(path)
    stored.profiles[name] = profile
    stored.default = name
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(msgspec.json.format(msgspec.json.encode(stored)))
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def load_profile(name: str | None = None) -> Profile:
    """The named profile (else the default one), with SAILPLANE_URL/SAILPLANE_TOKEN on top."""
    stored = read_profiles()
    chosen = name or os.environ.get("SAILPLANE_PROFILE") or stored.default
    profile = stored.profiles.get(chosen) if chosen else None
    if name and profile is None:
        raise ConfigError(f"--profile: no profile {name!r} in {config_path()}")
    url = os.environ.get("SAILPLANE_URL") or (profile.url if profile else None)
    token = os.environ.get("SAILPLANE_TOKEN") or (profile.token if profile else None)
    if not url or not token:
        raise ConfigError(
            "not logged in: run `sailplane login URL` (or set SAILPLANE_URL and SAILPLANE_TOKEN)"
        )
    return Profile(url=url, token=token)


# --- the client -------------------------------------------------------------------------------


class Client:
    """A session with one Sailplane server as one caller (an API key)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "sailplane-client"},
            timeout=timeout,
            transport=transport,
        )
        self.teams = Teams(self)
        self.clusters = Clusters(self)
        self.jobs = Jobs(self)
        self.runs = Runs(self)

    @classmethod
    def from_profile(cls, name: str | None = None, **kwargs: Any) -> Client:
        profile = load_profile(name)
        return cls(profile.url, profile.token, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One API call; the decoded JSON answer (None when empty) or ApiError."""
        try:
            response = self._http.request(
                method,
                path,
                params={k: v for k, v in (params or {}).items() if v is not None},
                content=None if json_body is None else json.dumps(json_body),
                headers={"Content-Type": "application/json"} if json_body is not None else None,
            )
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from None
        _raise_for(response)
        return response.json() if response.content else None

    def _get(self, path: str, into: type[T], **params: Any) -> T:
        return msgspec.convert(self.request("GET", path, params=params), into)

    def _pages(self, path: str, into: type[Any], limit: int | None, **params: Any) -> Iterator[Any]:
        """Walks a marker-paginated list, yielding each page's decoded body."""
        marker = None
        while True:
            page = self._get(
                path, into, limit=100 if limit is None else min(limit, 100), marker=marker, **params
            )
            yield page
            if page.marker is None or page.marker == marker:
                return
            marker = page.marker

    def stream(self, path: str, last_event_id: str | None = None) -> Iterator[tuple[str, str, Any]]:
        """Server-Sent Events of `path` as (event, id, decoded data), until the server ends."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            with self._http.stream("GET", path, headers=headers, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                event, event_id, data = "message", "", []
                for line in response.iter_lines():
                    if not line:
                        if data:
                            yield event, event_id, json.loads("\n".join(data))
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from None


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = msgspec.json.decode(response.content, type=_Error)
    except (msgspec.DecodeError, msgspec.ValidationError):
        error = _Error(message=response.text.strip() or response.reason_phrase)
    raise ApiError(response.status_code, error.message, error.code, error.field)


class _Group:
    def __init__(self, client: Client) -> None:
        self.client = client


class Teams(_Group):
    def list(self) -> list[Team]:
        items = self.client._get("/org/teams", _Items[_TeamItem], limit=100).items
        return [i.team for i in items]

    def create(self, name: str) -> Team:
        body = self.client.request("POST", "/org/teams", json_body={"name": name})
        return msgspec.convert(body["team"], Team)


class Clusters(_Group):
    def list(self) -> list[Cluster]:
        """The workload clusters the caller can run jobs on."""
        return [
            c
            for page in self.client._pages("/me/clusters", _ClusterListing, None)
            for c in page.included.clusters
        ]


class Jobs(_Group):
    def list(self, limit: int | None = None) -> list[Job]:
        jobs: list[Job] = []
        for page in self.client._pages("/workloads/jobs", _JobListing, limit):
            jobs.extend(page.included.jobs)
            if limit is not None and len(jobs) >= limit:
                return jobs[:limit]
        return jobs

    def create(self, spec: dict[str, Any]) -> Job:
        """A job from its API body (camelCase: jobKey, clusterId, teamIds, config, ...)."""
        return msgspec.convert(self.client.request("POST", "/workloads/jobs", json_body=spec), Job)

    def get(self, job: str) -> Job:
        """A job by id or by jobKey."""
        try:
            body = self.client.request("GET", f"/workloads/jobs/{job}")
            return msgspec.convert(body["included"]["jobs"][0], Job)
        except ApiError as exc:
            if exc.status != 404:
                raise
            for found in self.list():
                if found.job_key == job:
                    return found
            raise

    def run(self, job: str, *, hold: bool = False) -> JobRun:
        """Start a run of the job's active version (`pending` when held)."""
        job_id = self.get(job).id
        body = self.client.request(
            "POST", f"/workloads/jobs/{job_id}/runs", json_body={"hold": hold}
        )
        return msgspec.convert(body, JobRun)


class Runs(_Group):
    def _path(self, job: str, run: str = "") -> str:
        job_id = self.client.jobs.get(job).id
        return f"/workloads/jobs/{job_id}/runs" + (f"/{run}" if run else "")

    def list(self, job: str | None = None, limit: int | None = None) -> list[JobRun]:
        """The job's runs (every visible job's without one), newest first."""
        path = "/me/jobs/runs" if job is None else self._path(job)
        runs: list[JobRun] = []
        for page in self.client._pages(path, _Items[JobRun], limit):
            runs.extend(page.items)
            if limit is not None and len(runs) >= limit:
                return runs[:limit]
        return runs

    def get(self, job: str, run: str) -> JobRun:
        return self.client._get(self._path(job, run), JobRun)

    def cancel(self, job: str, run: str) -> JobRun:
        return self._act(job, run, "cancel")

    def retry(self, job: str, run: str, *, hold: bool = False) -> JobRun:
        return self._act(job, run, "retry", {"hold": hold})

    def _act(self, job: str, run: str, action: str, body: Any = None) -> JobRun:
        answer = self.client.request("POST", f"{self._path(job, run)}/{action}", json_body=body)
        return msgspec.convert(answer, JobRun)

    def logs(self, job: str, run: str) -> list[LogLine]:
        """Every log line the run has written so far."""
        path = self._path(job, run) + "/logs"
        lines: list[LogLine] = []
        marker = None
        while True:
            page = self.client._get(path, _Items[LogLine], limit=100, marker=marker)
            lines.extend(page.items)
            if not page.items:
                return lines
            marker = page.marker

    def watch(self, job: str, run: str) -> Iterator[RunEvent | LogLine]:
        """The run's transitions and log lines as they happen, until it finishes."""
        path = self._path(job, run) + "/stream"
        seen: str | None = None
        for attempt in range(STREAM_RECONNECTS + 1):
            try:
                for event, event_id, data in self.client.stream(path, seen):
                    seen = event_id or seen
                    if event == "status":
                        yield msgspec.convert(data, RunEvent)
                    elif event == "log":
                        yield msgspec.convert(data, LogLine)
                return
            except ConnectionFailed:
                # A dropped stream resumes where it stopped (`Last-Event-ID`), a few times.
                if seen is None or attempt == STREAM_RECONNECTS:
                    raise

    def follow_logs(self, job: str, run: str) -> Iterator[LogLine]:
        """The run's log lines, old and new, until it finishes."""
        for item in self.watch(job, run):
            if isinstance(item, LogLine):
                yield item
