"""Rich console and progress bars shared by the stages; everything user-facing prints through here."""

from __future__ import annotations

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
from rich.text import Text

console = Console(stderr=True)  # progress and messages; result tables go to stdout
out = Console()


class AudioColumn(ProgressColumn):
    """Audio hours done and audio seconds per wall second, from the task's `audio_s` field."""

    def render(self, task: Task) -> Text:
        audio_s = float(task.fields.get("audio_s", 0.0))
        speed = audio_s / task.elapsed if task.elapsed else 0.0
        return Text(f"{audio_s / 3600:.3f} audio-h  {speed:.1f}× realtime", style="cyan")


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
