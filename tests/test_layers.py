"""The package layers: `pipeline/` (CLI, quickstart) -> `stages/` -> `store_schema/`, and never back up; inside
`stages/`, the lab and the benchmarks on top, then evaluate, export, then corpus, extract and train side by
side (none importing another), over the shared modules at the root of `stages/`."""

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


# Top to bottom; a package may import only those on a lower row (and the modules at the root of stages/).
STAGE_ROWS: tuple[tuple[str, ...], ...] = (
    ("bench",),
    ("lab",),
    ("evaluate",),
    ("export",),
    ("corpus", "extract", "train"),
)


def imported_stages(source: str) -> set[str]:
    """The `stages.X` subpackages or modules a file imports (X only), anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        names.update(m.split(".")[1] for m in modules if m.startswith("stages.") and m.count(".") >= 1)
    return names


def stage_order_violations(stages: Path) -> list[str]:
    """'file imports stages.X' for every import of a package on the same row or a row above, and every import
    of a package by a root module of stages/."""
    row_of = {name: i for i, row in enumerate(STAGE_ROWS) for name in row}
    found = []
    for path in sorted(stages.rglob("*.py")):
        parts = path.relative_to(stages).parts
        own = row_of.get(parts[0]) if len(parts) > 1 else len(STAGE_ROWS)  # a root module: below every row
        for target in sorted(imported_stages(path.read_text())):
            if target not in row_of or (len(parts) > 1 and target == parts[0]):
                continue  # a root module of stages/, or the file's own package
            if own is None or row_of[target] <= own:
                found.append(f"{path.relative_to(stages.parent)} imports stages.{target}")
    unknown = sorted(
        p.name for p in stages.iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name not in row_of
    )
    return found + [f"stages/{name} has no row in STAGE_ROWS" for name in unknown]


def test_the_stages_import_only_the_rows_below_them() -> None:
    assert stage_order_violations(REPO / "stages") == []


def test_the_stage_order_check_fails_on_a_planted_arrow(tmp_path: Path) -> None:
    for package in ("train", "extract", "lab", "evaluate"):
        (tmp_path / "stages" / package).mkdir(parents=True)
        (tmp_path / "stages" / package / "__init__.py").write_text("")
    (tmp_path / "stages" / "evaluate" / "ok.py").write_text("from stages.train.model import CoatModel\n")
    (tmp_path / "stages" / "train" / "up.py").write_text("def f():\n    from stages.lab.synth import ANSWERS\n")
    (tmp_path / "stages" / "train" / "side.py").write_text("import stages.extract.runner\n")
    (tmp_path / "stages" / "audio.py").write_text("from stages.train import model\n")
    assert stage_order_violations(tmp_path / "stages") == [
        "stages/audio.py imports stages.train",
        "stages/train/side.py imports stages.extract",
        "stages/train/up.py imports stages.lab",
    ]


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
