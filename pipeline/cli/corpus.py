"""Making corpora: `synth` (the built-in acoustic QA set) and `shard` (tars from data people hold)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.errors import user_errors
from stages.progress import out, print_table
from store_schema.errors import UserError


@app.command()
@user_errors
def synth(
    out_dir: Annotated[str, typer.Option("--out", help="Folder (or s3://… gs://… URL) to write the shards into.")],
    clips: Annotated[int, typer.Option(help="Number of clips.", min=1)] = 600,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same corpus.")] = 0,
    shard_size: Annotated[int, typer.Option(help="Clips per tar shard.", min=1)] = 200,
    name: Annotated[str, typer.Option(help="Shard name prefix: NAME-000000.tar.")] = "train",
    min_seconds: Annotated[float, typer.Option(help="Shortest clip.", min=0.5)] = 1.0,
    max_seconds: Annotated[float, typer.Option(help="Longest clip (a 1-30 s spread tests duration batches).")] = 8.0,
    tasks: Annotated[
        str | None, typer.Option(help="Question types to ask, comma-separated, in turn (default: all six).")
    ] = None,
) -> None:
    """Generate the built-in acoustic QA corpus: tones, chirps, notes and noise with exact answers.

    Example: [bold]coat-pipe synth --out data/train --clips 600 --seed 0[/]
    """
    from stages.lab.synth import QUESTION_TYPES, check_tasks, synth_recipe, write_synth_corpus
    from store_schema.corpus import read_corpus
    from store_schema.location import corpus_path, storage_errors

    if max_seconds < min_seconds:
        raise UserError(f"--max-seconds {max_seconds:g} is below --min-seconds {min_seconds:g}")
    try:
        asked = check_tasks(tuple(tasks.split(","))) if tasks else QUESTION_TYPES
    except ValueError as e:
        raise UserError(f"--{e}") from None
    recipe = synth_recipe(clips, seed, shard_size, name, (min_seconds, max_seconds), asked)
    with storage_errors(out_dir):
        exists = (corpus_path(out_dir) / "corpus.json").exists()
    if exists:
        corpus = read_corpus(out_dir)
        if corpus.created_by != recipe:
            raise UserError(f"{out_dir} already holds another corpus ({corpus.created_by}); choose another --out")
        out.print(f"{out_dir} already holds this corpus ({recipe}): nothing to do")
        return
    made = write_synth_corpus(
        out_dir, clips, seed, shard_size, name, seconds_range=(min_seconds, max_seconds), tasks=asked
    )
    corpus = read_corpus(out_dir)
    rows = [(task, made[task]) for task in asked] + [("[bold]total", f"[bold]{corpus.samples}")]
    print_table(f"synth corpus → {out_dir}", ["question type", "clips"], rows)
    out.print(f"{len(corpus.shards)} shards, {corpus.seconds / 3600:.3f} h of audio")


SOURCE_FORMATS = ("chat", "hf", "lhotse")


@app.command()
@user_errors
def shard(
    out_dir: Annotated[
        str,
        typer.Option(
            "--out",
            help="Folder (or s3://… gs://… URL) to write the corpus into (new or empty; --append: a corpus).",
        ),
    ],
    manifest: Annotated[
        Path | None,
        typer.Option(
            help='JSONL: {"audio": path, "messages": [...], "task": ..., '
            '"key": optional}; paths relative to the manifest.'
        ),
    ] = None,
    audio_dir: Annotated[
        Path | None, typer.Option(help="A folder of audio files (a NAME.txt beside NAME.wav becomes its transcript).")
    ] = None,
    source: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            "--from",
            help="FORMAT SOURCE: chat FILE.json[l] (LLaMA-Factory / ms-swift), hf DIR|FILE.parquet "
            "(save_to_disk or parquet), lhotse CUTS.jsonl.gz (or RECORDINGS with --supervisions).",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="chat: a dataset of SOURCE/dataset_info.json (LLaMA-Factory).")
    ] = None,
    sharegpt: Annotated[
        bool, typer.Option("--sharegpt", help='chat: ShareGPT turns ("conversations", from/value, human/gpt).')
    ] = False,
    audio_column: Annotated[str, typer.Option(help="hf: the audio column (bytes or path).")] = "audio",
    messages_column: Annotated[str | None, typer.Option(help="hf: a column of role/content turns.")] = None,
    question_column: Annotated[str | None, typer.Option(help="hf: the question column (with --answer-column).")] = None,
    answer_column: Annotated[str | None, typer.Option(help="hf: the answer column.")] = None,
    supervisions: Annotated[Path | None, typer.Option(help="lhotse: the SupervisionSet of a RecordingSet.")] = None,
    allow_outside_audio: Annotated[
        bool, typer.Option("--allow-outside-audio", help="Accept audio paths outside the source's folder.")
    ] = False,
    sample_rate: Annotated[
        int | None, typer.Option(help="Sample rate of the stored FLAC (default 16000; when appending, the corpus's).")
    ] = None,
    shard_size: Annotated[int, typer.Option(help="Samples per tar shard.", min=1)] = 1000,
    name: Annotated[str, typer.Option(help="Shard name prefix: NAME-000000.tar.")] = "train",
    workers: Annotated[int, typer.Option(help="Decoding processes.", min=1)] = 2,
    max_seconds: Annotated[
        float, typer.Option(help="Longer files are rejected (their header is read before any decoding).", min=0.1)
    ] = 1200.0,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add shards to the corpus in --out: tars numbered after its own, keys made unique against its "
            "keys, corpus.json rewritten last (then extract the experts again: only the new shards are run).",
        ),
    ] = False,
) -> None:
    """Build WebDataset tar shards (16-bit FLAC + json) from a manifest, a folder of audio, or data in the
    shapes it already has (--from chat|hf|lhotse).

    Every unusable row goes to OUT/rejected.jsonl with its file, row and reason; the run goes on.

    Sources are read as streams: memory stays flat in the number of rows.

    Examples: [bold]coat-pipe shard --manifest clips.jsonl --out data/train[/];
    [bold]coat-pipe shard --from chat train.jsonl --out data/train[/];
    [bold]coat-pipe shard --from hf data/aqa --question-column question --answer-column answer --out data/aqa[/];
    [bold]coat-pipe shard --from lhotse cuts.jsonl.gz --out data/asr[/];
    [bold]coat-pipe shard --manifest more.jsonl --out data/train --append[/]
    """
    from stages.corpus.shard import build_shards, read_manifest, scan_audio_dir

    if sum(x is not None for x in (manifest, audio_dir, source)) != 1:
        raise UserError("give exactly one of --manifest FILE.jsonl, --audio-dir DIR or --from FORMAT SOURCE")
    rejected: list[dict[str, str]] = []
    if manifest is not None:
        entries, rejected = read_manifest(manifest, allow_outside_audio)
        if not entries and not rejected:
            raise UserError(f"no audio found in {manifest}")
    elif audio_dir is not None:
        entries, rejected = scan_audio_dir(audio_dir)
        if not entries and not rejected:
            raise UserError(f"no audio found in {audio_dir}")
    else:
        from stages.corpus import sources

        kind, path = source  # type: ignore[misc]
        if kind == "chat":
            entries = sources.read_chat(path, dataset, sharegpt, allow_outside_audio)
        elif kind == "hf":
            columns = (audio_column, messages_column, question_column, answer_column)
            entries = sources.read_hf(path, *columns, allow_outside=allow_outside_audio)
        elif kind == "lhotse":
            entries = sources.read_lhotse(path, supervisions, allow_outside_audio)
        else:
            raise UserError(f"--from {kind}: the formats are {', '.join(SOURCE_FORMATS)}")
    where = str(manifest or audio_dir or source[1])  # type: ignore[index]
    summary = build_shards(
        entries, out_dir, sample_rate, shard_size, name, workers, rejected, max_seconds=max_seconds, append=append,
        source=where,
    )  # fmt: skip
    rows = [
        ("written", summary.written),
        ("rejected", len(summary.rejected)),
        ("resampled", summary.resampled),
        ("mixed to mono", summary.downmixed),
        ("keys made safe/unique", summary.renamed_keys),
        ("conversations going on after the first answer (stored whole)", summary.multi_turn),
        ("shards", summary.shards),
    ]
    print_table(f"shard → {out_dir}", ["", "count"], rows)
    out.print(f"{summary.seconds / 3600:.3f} h of audio {'added' if append else 'written'}")
    if summary.rejected:
        rows = [(r["origin"], r["reason"]) for r in summary.rejected[:30]]
        print_table(f"rejected ({out_dir.rstrip('/')}/rejected.jsonl)", ["input", "reason"], rows)
