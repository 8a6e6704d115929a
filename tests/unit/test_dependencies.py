"""The server's code imports only what `pip install sailplane` brings (no test extra).

`python3 dev.py serve` installs the project without its test extra, while the test suite
runs with it; a module the server imports that only the test extra provides works in every
test and breaks the README's first command. This reads every import under `sailplane/` and
checks that each third-party module comes from a distribution the project's own
dependencies require (directly or through theirs).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extras(requirement: str) -> set[str]:
    found = re.search(r"\[([^\]]+)\]", requirement.split(";")[0])
    return {e.strip() for e in found.group(1).split(",")} if found else set()


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution installing `requirements` brings (markers of extras honoured)."""
    seen: set[str] = set()
    pending = [(r, _extras(r)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = _name(requirement)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # excluded by its marker (platform, version)
            continue
        for sub in requires:
            marker = sub.partition(";")[2]
            wanted = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if wanted and not set(wanted) & extras:
                continue
            pending.append((sub, _extras(sub)))
    return seen


def _imported_modules() -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / "sailplane").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"sailplane", "__future__"}


def test_every_module_the_server_imports_comes_with_its_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _closure(project["dependencies"])
    providers = metadata.packages_distributions()
    missing = {
        module: providers.get(module, ["?"])
        for module in _imported_modules()
        if not {_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, (
        f"imported by sailplane/ but only a test extra (or nothing) brings: {missing}"
    )
