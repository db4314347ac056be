"""The architecture of DESIGN.md stays visible: policies never import the simulator's engines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "equinox"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_scheduling_and_prediction_never_import_the_simulator() -> None:
    offenders = {
        f"{path.relative_to(SRC)} imports {name}"
        for package in ("scheduling", "prediction")
        for path in (SRC / package).rglob("*.py")
        for name in imported_modules(path)
        if name == "equinox.sim" or name.startswith("equinox.sim.")
    }
    assert not offenders, sorted(offenders)


def test_one_module_per_engine_behind_the_registry() -> None:
    from equinox.sim.engine import ENGINES, engine_class

    for name in ENGINES.names():
        cls = engine_class(name)
        assert cls.__module__ == f"equinox.sim.engine.{name}", (name, cls.__module__)
        assert cls.name == name
