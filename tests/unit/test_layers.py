"""The layer rules of docs/architecture.md, as import-linter contracts (`[tool.importlinter]`
in pyproject.toml): the domain imports nothing else of Sailplane; the use cases import no
adapter, handler, composition root or projection runner (adapters reach them through
`sailplane.commands.ports`); handlers import no adapter."""

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_the_import_contracts_hold(capsys) -> None:
    exit_code = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert exit_code == 0, report
    assert "0 broken" in report
