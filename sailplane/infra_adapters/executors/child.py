"""The process that runs one attempt's work: `python -m sailplane.infra_adapters.executors.child WORK.json`
(local executor), or this file's source as `python -c` in a Kubernetes Job's container with
the work in `SAILPLANE_WORK` (it needs only the Spark Connect client, not Sailplane).
A container's command (`config.container`) runs in place of this process on the local
host; on Kubernetes it is the container's own command and this file is not used.

SQL runs through a Spark Connect session to `SPARK_REMOTE`; the result rows are printed
(at most `MAX_ROWS`). A Python entry point (`config.python`) runs in this process with
`SPARK_REMOTE` set, so `SparkSession.builder.getOrCreate()` reaches the cluster:
`source` (inline code, run as `__main__`), or `entryPoint` as `module:function`, a module
name (run as `__main__`) or a path to a `.py` file; `parameters` become `sys.argv[1:]`
and `namedParameters` `--name=value` arguments. Exit status 0 is success.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
from typing import Any

MAX_ROWS = 100


def run_sql(text: str) -> None:
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(os.environ["SPARK_REMOTE"]).getOrCreate()
    statements = [s.strip() for s in text.split(";") if s.strip()]
    for statement in statements:
        frame = spark.sql(statement)
        rows = frame.limit(MAX_ROWS + 1).collect()
        if rows:
            print("\t".join(frame.columns), flush=True)
        for row in rows[:MAX_ROWS]:
            print("\t".join(str(v) for v in row), flush=True)
        if len(rows) > MAX_ROWS:
            print(f"... (more than {MAX_ROWS} rows)", flush=True)


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
        print(f"error: command not found: {argv[0]}", file=sys.stderr, flush=True)
        return 127
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


def main(path: str | None) -> int:
    if path is None:  # in a container: the work comes in the environment
        work = json.loads(os.environ["SAILPLANE_WORK"])
    else:
        with open(path, encoding="utf-8") as handle:
            work = json.load(handle)
    try:
        if work.get("container"):
            return run_command(work["container"])
        if work.get("sql"):
            run_sql(work["sql"])
        else:
            run_python(work["python"] or {})
    except SystemExit:
        raise
    except BaseException as error:  # the message is the run's failure reason
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
