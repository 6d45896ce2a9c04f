"""The package layers: `pipeline/` (CLI, quickstart) -> `stages/` -> `store_schema/`, and never back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("pipeline", "stages", "store_schema")  # each may import only the ones after it


def imported_packages(source: str) -> set[str]:
    """Top-level names of every module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def upward_imports(root: Path) -> list[str]:
    """'file imports package' for every import that points to a layer above the file's own."""
    found = []
    for rank, layer in enumerate(LAYERS):
        above = set(LAYERS[:rank])
        for path in sorted((root / layer).rglob("*.py")):
            for package in sorted(imported_packages(path.read_text()) & above):
                found.append(f"{path.relative_to(root)} imports {package}")
    return found


def test_no_layer_imports_one_above_it() -> None:
    assert upward_imports(REPO) == []


def test_the_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "stages" / "ok.py").write_text("from store_schema.errors import UserError\n")
    (tmp_path / "store_schema" / "bad.py").write_text("def f():\n    from stages.progress import console\n")
    (tmp_path / "stages" / "bad.py").write_text("import pipeline.cli\n")
    assert upward_imports(tmp_path) == ["stages/bad.py imports pipeline", "store_schema/bad.py imports stages"]


@pytest.mark.parametrize("package", ["pipeline", "stages", "store_schema"])
def test_no_import_cycle_between_modules_of_a_package(package: str) -> None:
    """Module-level imports inside one package form no cycle (quickstart <-> quickstart_report was one)."""
    graph: dict[str, set[str]] = {}
    files = {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in (REPO / package).rglob("*.py")}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in files and t != name}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in path and len(path) < 12:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for name in graph if (c := cycle_from(name)) and not name.endswith("__init__")]
    assert cycles == []
