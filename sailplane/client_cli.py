"""`sailplane` as a client of a running server (built on `sailplane.client`).

    sailplane login URL [--token TOKEN] [--profile NAME]
    sailplane teams list | create NAME
    sailplane clusters list
    sailplane jobs list | get JOB | create -f job.yaml [--cluster ID] [--team ID]
                  | run JOB [--hold] [--follow] | logs JOB [--run RUN] [--follow]
    sailplane runs list [JOB] | get JOB RUN | cancel JOB RUN | retry JOB RUN | watch JOB RUN
    sailplane api METHOD PATH [-f FILE | -d JSON]
    sailplane completion bash

JOB is a job id or its jobKey. Output is a table, or `-o json` (the API's objects), or
`-o id` (ids only, one a line, for scripts). Exit codes (EXIT_CODES) are stable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from sailplane.client import (
    ApiError,
    Client,
    ConfigError,
    ConnectionFailed,
    JobRun,
    LogLine,
    Profile,
    RunEvent,
    save_profile,
)

OK, API_ERROR, USAGE_ERROR, UNREACHABLE, RUN_NOT_COMPLETED = 0, 1, 2, 3, 4
EXIT_CODES = {
    OK: "success (for `watch`/`--follow`: the run completed)",
    API_ERROR: "the server answered an error (the message and code are printed)",
    USAGE_ERROR: "usage or configuration error (bad flag, no profile, unreadable file)",
    UNREACHABLE: "the server could not be reached",
    RUN_NOT_COMPLETED: "the run that was followed ended failed, timed out, cancelled or skipped",
}
FOLLOW_POLL_SECONDS = 1.0

Handler = Callable[[argparse.Namespace, Client], int]


class UsageError(Exception):
    """A flag or file the command cannot use."""


# --- output -----------------------------------------------------------------------------------


def _rows(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [msgspec.to_builtins(i) if isinstance(i, msgspec.Struct) else i for i in items]


def emit(args: argparse.Namespace, value: Any, columns: Sequence[str]) -> None:
    """`value` (a Struct or a list of them) as a table, JSON or ids."""
    rows = _rows(value)
    if args.output == "json":
        print(json.dumps(rows if isinstance(value, list) else rows[0], indent=2))
    elif args.output == "id":
        for row in rows:
            print(row["id"])
    else:
        print_table(rows, columns)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


JOB_COLUMNS = ("id", "jobKey", "status", "version", "clusterId", "cronExpression", "nextRunAt")
RUN_COLUMNS = ("id", "jobId", "status", "statusReason", "attempt", "trigger", "createdAt")


# --- commands ---------------------------------------------------------------------------------


def login(args: argparse.Namespace) -> int:
    token = args.token
    if token is None:
        token = (
            getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
        ).strip()
    if not token:
        raise UsageError(
            "--token: an API key is needed (`sailplane admin create-token` issues one)"
        )
    with Client(args.url, token) as client:
        me = client.request("GET", "/me")
    path = save_profile(args.profile or "default", Profile(url=args.url, token=token))
    who = (me.get("user") or {}).get("email") or (me.get("serviceAccount") or {}).get("username")
    print(f"logged in to {args.url} as {who or 'this key'}; profile saved in {path}")
    return OK


def teams_list(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.teams.list(), ("id", "name"))
    return OK


def teams_create(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.teams.create(args.name), ("id", "name"))
    return OK


def clusters_list(args: argparse.Namespace, client: Client) -> int:
    emit(
        args,
        client.clusters.list(),
        ("id", "name", "provider", "externalStatus", "externalClusterId"),
    )
    return OK


def jobs_list(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.jobs.list(limit=args.limit), JOB_COLUMNS)
    return OK


def jobs_get(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.jobs.get(args.job), JOB_COLUMNS)
    return OK


def jobs_create(args: argparse.Namespace, client: Client) -> int:
    spec = read_spec(args.file)
    if args.cluster:
        spec["clusterId"] = args.cluster
    if args.team:
        spec["teamIds"] = args.team
    if "clusterId" not in spec:
        spec["clusterId"] = _only_cluster(client)
    emit(args, client.jobs.create(spec), JOB_COLUMNS)
    return OK


def _only_cluster(client: Client) -> str:
    clusters = [c for c in client.clusters.list() if c.external_status == "active"]
    if len(clusters) != 1:
        names = ", ".join(f"{c.id} ({c.name})" for c in clusters) or "none"
        raise UsageError(f"--cluster: the job file names no clusterId; active clusters: {names}")
    return clusters[0].id


def read_spec(file: str) -> dict[str, Any]:
    """A job's API body from a YAML or JSON file (`-` reads standard input)."""
    import yaml

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        spec = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"-f: cannot read {file}: {exc}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"-f: {file} must hold a mapping (jobKey, config, ...)")
    return spec


def jobs_run(args: argparse.Namespace, client: Client) -> int:
    run = client.jobs.run(args.job, hold=args.hold)
    if not args.follow:
        emit(args, run, RUN_COLUMNS)
        return OK
    print(f"run {run.id} of job {run.job_id}: {run.status}", file=sys.stderr)
    return _follow(args, client, run, logs_only=False)


def jobs_logs(args: argparse.Namespace, client: Client) -> int:
    job = client.jobs.get(args.job)
    run = _chosen_run(client, job.id, args.run, wait=args.follow)
    if run is None:
        raise UsageError(f"job {job.job_key} has no run yet (add --follow to wait for one)")
    if args.follow:
        return _follow(args, client, run, logs_only=True)
    for line in client.runs.logs(job.id, run.id):
        print(_log_text(args, line))
    return OK


def _chosen_run(client: Client, job_id: str, run_id: str | None, *, wait: bool) -> JobRun | None:
    """The run asked for, else the job's latest one; with `wait`, the first one to come."""
    if run_id is not None:
        return client.runs.get(job_id, run_id)
    while True:
        latest = client.runs.list(job_id, limit=1)
        if latest or not wait:
            return latest[0] if latest else None
        time.sleep(FOLLOW_POLL_SECONDS)


def _follow(args: argparse.Namespace, client: Client, run: JobRun, *, logs_only: bool) -> int:
    """Print the run's log lines (and transitions) until it finishes; its exit code."""
    for item in client.runs.watch(run.job_id, run.id):
        if isinstance(item, LogLine):
            print(_log_text(args, item), flush=True)
        elif not logs_only:
            print(_event_text(args, item), flush=True)
    final = client.runs.get(run.job_id, run.id)
    print(f"run {final.id}: {final.status}", file=sys.stderr)
    return OK if final.status == "completed" else RUN_NOT_COMPLETED


def _log_text(args: argparse.Namespace, line: LogLine) -> str:
    return json.dumps(msgspec.to_builtins(line)) if args.output == "json" else line.line


def _event_text(args: argparse.Namespace, event: RunEvent) -> str:
    if args.output == "json":
        return json.dumps(msgspec.to_builtins(event))
    why = f" ({event.reason})" if event.reason else ""
    return f"[{event.time}] {event.type}: {event.status}{why}"


def runs_list(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.runs.list(args.job, limit=args.limit), RUN_COLUMNS)
    return OK


def runs_get(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.runs.get(args.job, args.run), RUN_COLUMNS)
    return OK


def runs_cancel(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.runs.cancel(args.job, args.run), RUN_COLUMNS)
    return OK


def runs_retry(args: argparse.Namespace, client: Client) -> int:
    emit(args, client.runs.retry(args.job, args.run, hold=args.hold), RUN_COLUMNS)
    return OK


def runs_watch(args: argparse.Namespace, client: Client) -> int:
    return _follow(args, client, client.runs.get(args.job, args.run), logs_only=False)


def api(args: argparse.Namespace, client: Client) -> int:
    body: Any = None
    if args.file:
        body = read_spec(args.file)
    elif args.data:
        try:
            body = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise UsageError(f"-d: not JSON: {exc}") from None
    path = args.path if args.path.startswith("/") else "/" + args.path
    path = path.removeprefix("/api/v1")
    answer = client.request(args.method.upper(), path, json_body=body)
    if answer is not None:
        if args.output == "id":
            print(answer.get("id", "") if isinstance(answer, dict) else "")
        else:
            print(json.dumps(answer, indent=2))
    return OK


# --- wiring -----------------------------------------------------------------------------------


def guarded(call: Callable[[], int]) -> int:
    """Runs a client command; errors become one line on stderr and a documented exit code."""
    try:
        return call()
    except ApiError as exc:
        print(f"error: {exc.message} ({exc.code}, HTTP {exc.status})", file=sys.stderr)
        return API_ERROR
    except (ConfigError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except ConnectionFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UNREACHABLE
    except KeyboardInterrupt:
        return 130


def run_client_command(handler: Handler, args: argparse.Namespace) -> int:
    def call() -> int:
        with Client.from_profile(args.profile) as client:
            return handler(args, client)

    return guarded(call)


def register(commands: argparse._SubParsersAction, root: argparse.ArgumentParser) -> None:
    """Adds the client commands to `sailplane`'s subcommands; each sets `entry(args) -> int`."""
    client_opts = argparse.ArgumentParser(add_help=False)
    client_opts.add_argument("--profile", default=None, help="the profile `login` saved")
    client_opts.add_argument(
        "-o", "--output", choices=("table", "json", "id"), default="table", help="output format"
    )

    def add(sub: argparse._SubParsersAction, name: str, handler: Handler, **kw: Any) -> Any:
        parser = sub.add_parser(name, parents=[client_opts], **kw)
        parser.set_defaults(entry=lambda args: run_client_command(handler, args))
        return parser

    login_cmd = commands.add_parser("login", help="save a server URL and API key as a profile")
    login_cmd.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    login_cmd.add_argument("--token", default=None, help="the API key (else asked for)")
    login_cmd.add_argument("--profile", default=None, help="profile name (default: default)")
    login_cmd.set_defaults(entry=lambda args: guarded(lambda: login(args)))

    teams = commands.add_parser("teams", help="teams (client)").add_subparsers(
        dest="action", required=True
    )
    add(teams, "list", teams_list, help="list the teams")
    add(teams, "create", teams_create, help="create a team").add_argument("name")

    clusters = commands.add_parser("clusters", help="clusters (client)").add_subparsers(
        dest="action", required=True
    )
    add(clusters, "list", clusters_list, help="the clusters you can run jobs on")

    jobs = commands.add_parser("jobs", help="jobs (client)").add_subparsers(
        dest="action", required=True
    )
    add(jobs, "list", jobs_list, help="list the jobs").add_argument("--limit", type=int)
    add(jobs, "get", jobs_get, help="describe a job").add_argument("job")
    create = add(jobs, "create", jobs_create, help="create a job from a YAML or JSON file")
    create.add_argument("-f", "--file", required=True, help="the job's API body (- for stdin)")
    create.add_argument("--cluster", help="clusterId (default: your only active cluster)")
    create.add_argument("--team", action="append", help="a team id (repeatable)")
    run = add(jobs, "run", jobs_run, help="start a run of the job's active version")
    run.add_argument("job")
    run.add_argument("--hold", action="store_true", help="create it pending")
    run.add_argument("--follow", action="store_true", help="print its logs until it finishes")
    logs = add(jobs, "logs", jobs_logs, help="the logs of the job's latest run (or --run)")
    logs.add_argument("job")
    logs.add_argument("--run", default=None)
    logs.add_argument(
        "--follow", action="store_true", help="wait for a run if none yet, stream until it ends"
    )

    runs = commands.add_parser("runs", help="job runs (client)").add_subparsers(
        dest="action", required=True
    )
    listed = add(runs, "list", runs_list, help="a job's runs (every job's without JOB)")
    listed.add_argument("job", nargs="?")
    listed.add_argument("--limit", type=int)
    for name, handler, what in (
        ("get", runs_get, "describe a run"),
        ("cancel", runs_cancel, "cancel an unfinished run"),
        ("retry", runs_retry, "run a failed, timed-out or cancelled run again"),
        ("watch", runs_watch, "print transitions and logs until the run finishes"),
    ):
        parser = add(runs, name, handler, help=what)
        parser.add_argument("job")
        parser.add_argument("run")
        if name == "retry":
            parser.add_argument("--hold", action="store_true")

    raw = commands.add_parser(
        "api", parents=[client_opts], help="call any API endpoint (PATH under /api/v1)"
    )
    raw.add_argument("method", choices=("GET", "POST", "PUT", "PATCH", "DELETE"), type=str.upper)
    raw.add_argument("path")
    body = raw.add_mutually_exclusive_group()
    body.add_argument("-f", "--file", help="the request body from a YAML or JSON file")
    body.add_argument("-d", "--data", help="the request body as JSON")
    raw.set_defaults(entry=lambda args: run_client_command(api, args))

    completion = commands.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=("bash",))
    completion.set_defaults(entry=lambda args: print(bash_completion(root)) or OK)


# --- shell completion -------------------------------------------------------------------------


def _words(parser: argparse.ArgumentParser, path: str, out: dict[str, list[str]]) -> None:
    words: list[str] = []
    for action in parser._actions:
        words.extend(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                _words(sub, f"{path} {name}".strip(), out)
        elif action.choices and not action.option_strings:
            words.extend(str(c) for c in action.choices)
    out[path] = words


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion script: subcommands and flags at every level of `sailplane`."""
    table: dict[str, list[str]] = {}
    _words(parser, "", table)
    cases = "\n".join(
        f'        "{path}") words="{" ".join(words)}" ;;' for path, words in sorted(table.items())
    )
    return f"""# sailplane bash completion: eval "$(sailplane completion bash)"
_sailplane() {{
    local cur path next word words i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in -*) continue ;; esac
        next="${{path:+$path }}$word"
        [ -n "$(_sailplane_words "$next")" ] && path="$next"
    done
    words="$(_sailplane_words "$path")"
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
_sailplane_words() {{
    local words=""
    case "$1" in
{cases}
    esac
    echo "$words"
}}
complete -F _sailplane sailplane
"""


def describe_exit_codes() -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in EXIT_CODES.items())
