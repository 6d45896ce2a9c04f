"""The store: `store check`, `store info`, `store stats`."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import CorpusArg, store_app
from pipeline.errors import user_errors
from stages.progress import out, print_table


@store_app.command("check")
@user_errors
def store_check(
    corpus: CorpusArg,
    expert: Annotated[str | None, typer.Option(help="Experts that must be present (default: all found).")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Structure only: skip reading every value and every tar sample.")
    ] = False,
) -> None:
    """Validate the store and the tars it belongs to, value by value.

    Checks every tar to its end against corpus.json, every group's keys, offsets, options (fingerprint
    recomputed) and chunk files, the stats files; then reads every target (NaN/Inf, content hashes written
    at extraction, unreadable chunks), recomputes the stats, and reads every sample's conversation as
    training will. --quick does the first part only (what training checks before it starts).

    Exit 0 when sound, 1 with a table of problems and the command that fixes each.

    Example: [bold]coat-pipe store check data/train[/]
    """
    import time

    from store_schema.check import check_store
    from store_schema.corpus import read_corpus

    info = read_corpus(corpus)
    started = time.perf_counter()
    problems = check_store(info, expert.split(",") if expert else None, full=not quick)
    if not problems:
        mode = "structure" if quick else "structure and every value"
        seconds = time.perf_counter() - started
        out.print(
            f"[green]store is sound[/]: {len(info.shards)} shards, {info.samples} clips "
            f"({mode} checked in {seconds:.1f} s)"
        )
        return
    rows = [(p.shard, p.what, p.fix) for p in problems]
    print_table(f"{len(problems)} problem(s) in {corpus}", ["shard", "problem", "fix"], rows)
    raise typer.Exit(1)


@store_app.command("info")
@user_errors
def store_info_cmd(corpus: CorpusArg) -> None:
    """Shards, clips, hours, and per expert: shards done, bytes, bytes per audio hour, clips by status.

    Example: [bold]coat-pipe store info data/train[/]
    """
    from store_schema.check import store_info
    from store_schema.corpus import read_corpus

    info = store_info(read_corpus(corpus))
    out.print(f"{corpus}: {info['shards']} shards, {info['clips']} clips, {info['hours']:.3f} h")
    rows = [
        (
            name,
            e["kind"],
            e["dim"],
            f"{e['shards']}/{info['shards']}",
            e["frames"],
            f"{e['bytes'] / 1e6:.2f}",
            f"{e['bytes_per_audio_hour'] / 1e6:.1f}",
            ", ".join(f"{k} {v}" for k, v in sorted(e["status"].items())),
        )
        for name, e in info["experts"].items()
    ]
    print_table(None, ["expert", "kind", "dim", "shards", "frames", "MB", "MB / audio-h", "status"], rows)


@store_app.command("stats")
@user_errors
def store_stats(
    corpus: CorpusArg,
    expert: Annotated[str | None, typer.Option(help="Experts to recompute (default: all found).")] = None,
) -> None:
    """Recompute stats/<expert>.json (per-dimension mean and std over ok clips) from the stored frames.

    Example: [bold]coat-pipe store stats data/train --expert mel[/]
    """
    from store_schema.corpus import read_corpus
    from store_schema.writer import rewrite_stats

    info = read_corpus(corpus)
    for stats in rewrite_stats(info, expert.split(",") if expert else None):
        out.print(f"stats/{stats.expert}.json: {stats.clips} clips, dim {stats.dim}")
