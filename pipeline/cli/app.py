"""The `coat-pipe` command groups and the options several commands share; the commands live beside it, by area."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import click
import rich.table
import rich.text
import typer
import typer.core
import typer.rich_utils

app = typer.Typer(
    help="Continuous Audio Thinking: extract expert targets once, then train LALMs to think in audio.\n\n"
    "Everything on this machine:  coat-pipe quickstart\n\n"
    "Stage one:  coat-pipe synth --out data/train && coat-pipe extract --corpus data/train --expert mel,pitch",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect and validate the expert-feature store.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks: throughput as ratios against a baseline in the same process.", no_args_is_help=True
)
eval_app = typer.Typer(
    help="Score a trained run on a benchmark; re-score saved predictions; compare runs.\n\n"
    "Example: coat-pipe eval --run runs/coat --benchmark mmau --manifest mmau-test-mini.json --out eval/coat",
    invoke_without_command=True,
    rich_markup_mode="rich",
)
app.add_typer(store_app, name="store")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")


@app.callback()
def _launcher_arguments(
    local_rank: Annotated[int | None, typer.Option("--local_rank", hidden=True, help="Set by deepspeed.")] = None,
) -> None:
    """The deepspeed launcher puts --local_rank=N right after the program, before the command; the rank
    itself is read from LOCAL_RANK, which the launcher also sets."""


CorpusOpt = Annotated[
    str, typer.Option("--corpus", "-c", help="Corpus folder (with corpus.json and the tars), or s3://… gs://… URL.")
]
CorpusArg = Annotated[str, typer.Argument(metavar="CORPUS", help="Corpus folder, or its s3://… gs://… URL.")]


RunOpt = Annotated[Path, typer.Option("--run", help="Training run directory (its final/ bundle), or a bundle.")]


BENCHMARK_HELP = "mmau, mmar, classification, asr or synth."


def _flags_without_a_type(option: typer.core.TyperOption, ctx: click.Context) -> str | None:
    """Typer prints a value's type beside every option; a flag takes no value, so it gets none (not `<bool>`)."""
    return None if option.is_flag else _typer_display_type(option, ctx)


def _usage_name(argument: typer.core.TyperArgument) -> str:
    """An argument in the usage line as click and most tools write it: CORPUS, [CORPUS], OUTPUT... (Typer
    writes a required one in braces, `{corpus}`, which reads like a template to fill in)."""
    name = argument.display_name_raw.upper()
    name = name if argument.required else f"[{name}]"
    return f"{name}..." if argument.nargs != 1 else name


def _help_that_folds(**kwargs: object) -> object:
    """An option's help with a word longer than its column folded onto the next line, never cut to `…`
    (at 80 columns `[NAME=]PATH[:WEIGHT]` lost its end)."""
    columns = _typer_parameter_help(**kwargs)
    for item in columns.renderables:
        if isinstance(item, rich.text.Text):
            item.overflow = "fold"
    return columns


class _FoldingTable(rich.table.Table):
    """Typer's tables with every column folding what does not fit (rich cuts a cell to `…` by default: at 80
    columns `--gradient-checkpointing` read `--gradient-check…`)."""

    def add_row(self, *renderables: object, **kwargs: object) -> None:
        super().add_row(*renderables, **kwargs)
        for column in self.columns:
            column.overflow = "fold"


# Typer draws help with rich but offers no setting for these; what is patched is named, and nothing else.
_typer_parameter_help = typer.rich_utils._get_parameter_help
typer.rich_utils._get_parameter_help = _help_that_folds
typer.rich_utils.Table = _FoldingTable
_typer_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flags_without_a_type  # type: ignore[method-assign]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


def reflow_help(group: typer.Typer) -> None:
    """Each command's help as written in its docstring, with each paragraph joined into one line: rich
    then wraps it at the terminal's width, instead of keeping the source's line breaks, which at 80
    columns leave ragged half-lines. The command list shows each command's first sentence."""
    for info in group.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n"))
        info.short_help = info.short_help or first_sentence(info.help)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)


def first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph: what `coat-pipe --help` lists for a command."""
    paragraph = text.split("\n\n")[0]
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]
