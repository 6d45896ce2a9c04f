"""Rich console, progress bars and tables shared by the stages; everything user-facing prints through here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# soft_wrap: a message stays one line in a log file (SLURM output) instead of breaking at 80 columns
console = Console(stderr=True, soft_wrap=True)  # progress and messages; result tables go to stdout
out = Console(soft_wrap=True)


class AudioColumn(ProgressColumn):
    """Audio hours done and audio seconds per wall second, from the task's `audio_s` field."""

    def render(self, task: Task) -> Text:
        audio_s = float(task.fields.get("audio_s", 0.0))
        speed = audio_s / task.elapsed if task.elapsed else 0.0
        return Text(f"{audio_s / 3600:.3f} h audio · {speed:.0f}× realtime", style="cyan")


def audio_progress(*, disable: bool = False) -> Progress:
    """A bar that counts items, audio hours done and throughput. Tasks carry an `audio_s` field."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        AudioColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def training_progress(*, disable: bool = False) -> Progress:
    """A bar over optimizer steps whose `parts` field shows the stage, each loss part and samples/s."""
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[parts]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A result table on stdout, readable wherever it goes.

    Piped or in a log, it is printed at its natural width: no cell is cut or folded at 80 columns. In a
    terminal narrower than that, each row becomes a block of "column: value" lines instead, so names and
    hub ids are never broken mid-word across a squeezed column."""
    cells = [[str(cell) for cell in row] for row in rows]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    natural = Measurement.get(out, out.options.update(width=100_000), table).maximum
    if not out.is_terminal:
        Console(file=out.file, width=natural, color_system=None).print(table)
    elif natural <= out.width:
        out.print(table)
    else:
        print_records(title, columns, cells)


def print_records(title: str | None, columns: Sequence[str], rows: list[list[str]]) -> None:
    """The narrow layout of a table: a bold first cell per row, then its other cells as "column: value"."""
    if title:
        out.print(Text.from_markup(title, style="italic"))
    for row in rows:
        out.print(Text.from_markup(row[0], style="bold"))
        grid = Table.grid(padding=(0, 1, 0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in zip(columns[1:], row[1:]):
            grid.add_row(f"{name}:" if name else "", value)
        out.print(grid)
