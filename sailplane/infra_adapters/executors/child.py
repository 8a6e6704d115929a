"""The process that runs one attempt's work: `python -m sailplane.infra_adapters.executors.child WORK.json`
(local executor), or this file's source as `python -c` in a Kubernetes Job's container with
the work in `SAILPLANE_WORK` (it needs only the Spark Connect client, not Sailplane).

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
