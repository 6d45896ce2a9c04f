"""Result tables read at 80 columns in a terminal, and are never cut or folded when piped to a file."""

import io

from rich.console import Console
from rich.markup import escape

import stages.progress as progress
from stages.extract.experts import expert_table

HEADER = ["name", "hears", "model", "rate in → frames", "kind", "needs", "weights"]
ROWS = [(name, *row) for name, row in expert_table().items()]  # long names, hub ids, "[emotion2vec]"


def _printed(monkeypatch, console: Console) -> str:
    monkeypatch.setattr(progress, "out", console)
    progress.print_table("experts", HEADER, [[escape(cell) for cell in row] for row in ROWS])
    return console.file.getvalue()


def test_piped_table_keeps_every_row_on_one_line(monkeypatch):
    text = _printed(monkeypatch, Console(file=io.StringIO(), width=80))  # a file: not a terminal
    lines = text.splitlines()
    for name, *cells in ROWS:
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert all(cell in row for cell in cells), row  # hub ids and long names whole, on the row's one line
    assert max(len(line) for line in lines) > 80  # it took the width it needs


def test_narrow_terminal_gets_one_block_per_row_within_80_columns(monkeypatch):
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    lines = _printed(monkeypatch, console).splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "beats-tags" in lines and "mel" in lines  # each row's name on a line of its own, never split
    assert any("hub openai/whisper-large-v3" in line for line in lines)
    assert sum(line.strip().startswith("weights:") for line in lines) == len(ROWS)


def test_wide_terminal_gets_the_table(monkeypatch):
    console = Console(file=io.StringIO(), width=300, force_terminal=True, color_system=None)
    text = _printed(monkeypatch, console)
    assert "┃ name" in text and "weights:" not in text
