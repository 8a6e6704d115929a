"""The server's code imports only what `pip install sailplane` brings (no test extra).

`python3 dev.py serve` installs the project without its test extra, while the test suite
runs with it; a module the server imports that only the test extra provides works in every
test and breaks the README's first command. This reads every import under `sailplane/` and
checks that each third-party module comes from a distribution the project's own
dependencies require (directly or through theirs).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution installing `requirements` brings (markers, extras included)."""
    seen: set[str] = set()
    pending = [(Requirement(r), frozenset[str]()) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": e}) for e in extras or {""}
        ):
            continue  # not for this platform or Python, or for an extra nobody asked for
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending.extend((Requirement(sub), frozenset(requirement.extras)) for sub in requires)
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
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, (
        f"imported by sailplane/ but only a test extra (or nothing) brings: {missing}"
    )
