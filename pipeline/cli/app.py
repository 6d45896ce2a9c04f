"""The `coat-pipe` command groups and the options several commands share; the commands live beside it, by area."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

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
CorpusArg = Annotated[str, typer.Argument(help="Corpus folder, or its s3://… gs://… URL.")]


RunOpt = Annotated[Path, typer.Option("--run", help="Training run directory (its final/ bundle), or a bundle.")]


BENCHMARK_HELP = "mmau, mmar, classification, asr or synth."


def reflow_help(group: typer.Typer) -> None:
    """Each command's help as written in its docstring, with each paragraph joined into one line: rich
    then wraps it at the terminal's width, instead of keeping the source's line breaks, which at 80
    columns leave ragged half-lines."""
    for info in group.registered_commands:
        doc = info.help or inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(part.split()) for part in doc.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            reflow_help(sub.typer_instance)
