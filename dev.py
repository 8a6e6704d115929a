#!/usr/bin/env python3
"""Sailplane's two commands, for a machine with nothing but Python 3.11+ and pip.

    python3 dev.py serve [sailplane serve options]   install, then serve on http://127.0.0.1:8000
    python3 dev.py test  [pytest options]            install with test extras, then run every test
    python3 dev.py bench [--quick]                   every benchmark in bench/, figures in docs/performance.md
    python3 dev.py bench --peers                     Sailplane next to Prefect 3.9.1 (bench/peers/)

Both create `.venv/` next to this file on first use and reinstall only when
pyproject.toml changes. Without a working `venv` module they install into the user site.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"


def _python() -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / "python"


def _ensure_environment(extras: str) -> str:
    """Install the project (with `extras`) and return the interpreter to run it with."""
    if sys.version_info < (3, 11):
        sys.exit(f"Sailplane needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    python = _python()
    if not python.exists():
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # no ensurepip on this Python: install for the user instead
            print(f"could not create {VENV} ({exc}); installing into the user site", file=sys.stderr)
            python = Path(sys.executable)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if not stamp.exists() or stamp.read_text() != digest:
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target]
        if python == Path(sys.executable) and not VENV.exists():
            command.insert(4, "--user")
        print(f"installing Sailplane{f' [{extras}]' if extras else ''} ...", file=sys.stderr, flush=True)
        subprocess.run(command, check=True)
        VENV.mkdir(exist_ok=True)
        stamp.write_text(digest)
    return str(python)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"serve", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        python = _ensure_environment("")
        os.execv(python, [python, "-m", "sailplane.cli", "serve", *rest])
    python = _ensure_environment("test")
    os.chdir(ROOT)
    if command == "bench":
        if "--peers" in rest:  # Prefect goes into bench/peers/.venv, never this one
            peers = [python, str(ROOT / "bench" / "peers" / "run.py")]
            return subprocess.run([*peers, *(a for a in rest if a != "--peers")]).returncode
        return _bench(python, quick="--quick" in rest)
    os.execv(python, [python, "-m", "pytest", *rest])
    return 0


# Each benchmark prints its figures next to a baseline measured in the same run.
BENCHMARKS = {
    "run.py": ([], ["--quick"]),  # commands, rebuild, read-your-writes, HTTP
    "runs.py": ([], ["--runs", "100", "--latency", "10", "--completions", "10"]),  # job runs on Sail
    "scheduler.py": ([], ["--schedules", "1000", "--bursts", "2"]),  # 10,000 schedules
    "run_queue.py": ([], ["--quick"]),  # 10,000 queued runs drained, next to procrastinate
}


def _bench(python: str, *, quick: bool) -> int:
    failed = 0
    for script, (full, small) in BENCHMARKS.items():
        print(f"== bench/{script}", flush=True)
        args = [python, str(ROOT / "bench" / script), *(small if quick else full)]
        failed |= subprocess.run(args, check=False).returncode
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
