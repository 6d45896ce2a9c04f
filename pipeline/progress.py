"""Rich console, progress bars and tables shared by the stages; everything user-facing prints through here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
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
    """A result table on stdout. Long cells fold rather than being cut, so paths stay whole."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    out.print(table)
