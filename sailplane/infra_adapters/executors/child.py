"""The process that runs one attempt's work: `python -m sailplane.infra_adapters.executors.child
--assignment-on-stdin [--warm-up]` (local executor), or this file's source as `python -c` in a
Kubernetes Job's container with the work in `SAILPLANE_WORK` (it needs only the Spark
Connect client, not Sailplane). A container's command (`config.container`) runs in place
of this process on the local host; on Kubernetes it is the container's own command and
this file is not used.

Local: the child reads its one assignment, a JSON line `{"work": ..., "variables": ...}`,
from stdin, sets the run's variables in its environment, and runs the work; stdin then
reads as empty. With `--warm-up` (a warm child, started before its attempt is known) it
first imports the engine client and opens its Spark Connect session to `SPARK_REMOTE`,
quietly: the work's `SparkSession.builder...getOrCreate()` gets that session (checked,
and opened anew if the server dropped it meanwhile). A child whose stdin closes with no
assignment exits with status 3. Before any of the work's output, the first line on stdout
is the child's own report `PREAMBLE {"connect_ms": N}` (the executor reads it and does not
log it): how long after the hand-over the work's engine session answered, or null when
the work opens its own session (a Python entry point on a cold child) or has none (a
container's command). After SQL the process exits at once (no interpreter
teardown); a Python entry point's process ends as any Python program.

SQL runs through a Spark Connect session to `SPARK_REMOTE`; the result rows are printed
(at most `MAX_ROWS`). A Python entry point (`config.python`) runs in this process with
`SPARK_REMOTE` set, so `SparkSession.builder.getOrCreate()` reaches the cluster:
`source` (inline code, run as `__main__`), or `entryPoint` as `module:function`, a module
name (run as `__main__`) or a path to a `.py` file; `parameters` become `sys.argv[1:]`
and `namedParameters` `--name=value` arguments. Exit status 0 is success.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

MAX_ROWS = 100
NOT_ASSIGNED = 3  # exit status of a child stopped before it was given an attempt
# A container's command that does not exist: this exit status and, as its last `error: `
# line, `command_not_found(argv[0])` (the executor reads the pair as the platform's failure).
COMMAND_NOT_FOUND_STATUS = 127
PREAMBLE = "\x1esailplane-attempt "  # the first stdout line of a local attempt: see above


def command_not_found(name: str) -> str:
    return f"command not found: {name}"


def run_sql(text: str, connected: Callable[[bool], None] = lambda _: None) -> None:
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
    _touch(spark)
    connected(True)
    statements = [s.strip() for s in text.split(";") if s.strip()]
    first: dict[str, Any] | None = None
    for statement in statements:
        frame = spark.sql(statement)
        rows = frame.limit(MAX_ROWS + 1).collect()
        if rows:
            print("\t".join(frame.columns), flush=True)
            if first is None:
                first = {"columns": list(frame.columns), "rows": [list(r) for r in rows[:MAX_ROWS]]}
        for row in rows[:MAX_ROWS]:
            print("\t".join(str(v) for v in row), flush=True)
        if len(rows) > MAX_ROWS:
            print(f"... (more than {MAX_ROWS} rows)", flush=True)
    if first is not None:
        report_rows(first)


def report_rows(first: dict[str, Any]) -> None:
    """A SQL run's result: the first statement's rows that returned any (at most `MAX_ROWS`,
    fewer if they are over the result's size limit), as `{columns, rows}`, when the run
    runtime is reachable (values JSON cannot hold become text)."""
    if not os.environ.get("SAILPLANE_RUN_TOKEN"):
        return
    try:
        from sailplane import runtime

        rows = json.loads(json.dumps(first["rows"], default=str))
        while True:
            try:
                runtime.result({"columns": first["columns"], "rows": rows})
                return
            except runtime.RuntimeRefused as refused:
                if refused.status != 413 or not rows:
                    raise
                rows = rows[: len(rows) // 2]
    except Exception as error:  # the rows are in the logs either way
        print(f"warning: the result was not reported: {error}", file=sys.stderr, flush=True)


def run_python(config: dict[str, Any]) -> None:
    args = [str(a) for a in _flatten(config.get("parameters") or [])]
    args += [f"--{k}={v}" for k, v in (config.get("namedParameters") or {}).items()]
    entry = config.get("entryPoint")
    source = config.get("source")
    if source and not entry:
        sys.argv = ["<job>", *args]
        exec(compile(source, "<job>", "exec"), {"__name__": "__main__"})
        return
    if not entry:
        raise SystemExit("config.python needs source or entryPoint")
    if entry.endswith(".py"):
        sys.argv = [entry, *args]
        runpy.run_path(entry, run_name="__main__")
    elif ":" in entry:
        module, _, function = entry.partition(":")
        sys.argv = [module, *args]
        getattr(importlib.import_module(module), function)()
    else:
        sys.argv = [entry, *args]
        runpy.run_module(entry, run_name="__main__", alter_sys=True)


def run_command(container: dict[str, Any]) -> int:
    """Replace this process by the container's command (`argv`), with only `PATH`, `HOME`,
    the `SAILPLANE_*` variables and the job's own `env` (which may set `PATH`). The image is
    not pulled here: on this host the command runs as a process of its own."""
    argv = [str(a) for a in container["argv"]]
    env = {
        k: v for k, v in os.environ.items() if k in ("PATH", "HOME") or k.startswith("SAILPLANE_")
    }
    env.update({str(k): str(v) for k, v in (container.get("env") or {}).items()})
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        print(f"error: {command_not_found(argv[0])}", file=sys.stderr, flush=True)
        return COMMAND_NOT_FOUND_STATUS
    except PermissionError:
        print(
            f"error: permission denied: {argv[0]} cannot be executed", file=sys.stderr, flush=True
        )
        return 126
    except OSError as error:
        print(f"error: {argv[0]} cannot be executed: {error.strerror}", file=sys.stderr, flush=True)
        return 126
    return 0  # not reached: exec replaced the process


def _flatten(values: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for v in values:
        flat.extend(_flatten(v) if isinstance(v, list) else [v])
    return flat


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Nothing this process writes meanwhile reaches its output (the logs are the work's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(quiet)


def warm_up() -> Any:
    """Import the engine client and open the session to `SPARK_REMOTE`, quietly; the session
    (also when its first round trip failed: `renew` checks it again), or None. A failure is
    left for the work to meet and report."""
    session = None
    with _quiet():
        try:
            from pyspark.sql.connect.session import SparkSession

            if os.environ.get("SPARK_REMOTE"):
                session = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
                _touch(session)  # the server has the session now
        except Exception:  # the work opens its session itself and says what fails
            pass
    return session


def _touch(session: Any) -> None:
    """One round trip in the session (reading a setting); it fails once the server dropped
    the session. (The server's version is answered without a session.)"""
    session.conf.get("spark.sql.session.timeZone")


def renew(session: Any) -> None:
    """The warm session, checked once work has come: the server may have dropped it while
    this child waited (an idle session expires; a server restarts). One that no longer
    answers is replaced by a new one, which the work's `getOrCreate()` then gets."""
    from pyspark.sql.connect.session import SparkSession

    with _quiet():
        try:
            _touch(session)
        except Exception:
            with contextlib.suppress(Exception):
                session.stop()  # no longer the process's session (creating one does not do that)
            with contextlib.suppress(Exception):
                SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()


def assignment() -> dict[str, Any]:
    """The one assignment on stdin: its run variables go into the environment, its work is
    returned; stdin then reads as empty (as /dev/null)."""
    line = sys.stdin.buffer.readline()
    if not line:
        raise SystemExit(NOT_ASSIGNED)
    given = json.loads(line)
    os.environ.update(given["variables"])
    empty = os.open(os.devnull, os.O_RDONLY)
    os.dup2(empty, 0)
    os.close(empty)
    return dict(given["work"])


class Preamble:
    """The child's report before the work's output (local attempts only; once)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.handed_over = time.monotonic()

    def __call__(self, connected: bool) -> None:
        if not self.enabled:
            return
        self.enabled = False
        ms = int((time.monotonic() - self.handed_over) * 1000) if connected else None
        sys.stdout.write(PREAMBLE + json.dumps({"connect_ms": ms}) + "\n")
        sys.stdout.flush()


def _install_runtime() -> None:
    """In a pod: `sailplane.runtime` from the source the executor passed
    (`SAILPLANE_RUNTIME_SOURCE`, the server's own version), so the work can `from sailplane
    import runtime` whether or not its image has Sailplane (or an older one)."""
    source = os.environ.pop("SAILPLANE_RUNTIME_SOURCE", None)
    if source is None:
        return
    import types

    try:
        package = importlib.import_module("sailplane")
    except ImportError:
        package = types.ModuleType("sailplane")
        package.__path__ = []
        sys.modules["sailplane"] = package
    module = types.ModuleType("sailplane.runtime")
    sys.modules["sailplane.runtime"] = module
    exec(compile(source, "sailplane/runtime.py", "exec"), module.__dict__)
    package.runtime = module  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    if "--assignment-on-stdin" in argv:
        session = warm_up() if "--warm-up" in argv else None
        work = assignment()
        preamble = Preamble(enabled=True)
        if session is not None:
            renew(session)
    else:  # in a container: the work comes in the environment
        work = json.loads(os.environ["SAILPLANE_WORK"])
        _install_runtime()
        preamble, session = Preamble(enabled=False), None
    code = 0
    try:
        if work.get("container"):
            preamble(False)
            return run_command(work["container"])
        if work.get("sql"):
            run_sql(work["sql"], preamble)
        else:
            preamble(session is not None)
            run_python(work["python"] or {})
    except SystemExit:
        raise
    except BaseException as error:  # the message is the run's failure reason
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        code = 1
    if work.get("sql"):
        # Only this file's code ran: exit without tearing the interpreter down (with the
        # engine client loaded that is about 0.4 s of CPU). A Python entry point's process
        # ends normally: its threads, finalizers and exit handlers run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
