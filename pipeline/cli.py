"""The `coat-pipe` command line: thin commands, each one call into `stages.*` or `store_schema`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.errors import UserError, user_errors
from pipeline.progress import out, print_table

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
app.add_typer(store_app, name="store")
app.add_typer(bench_app, name="bench")


@app.callback()
def _launcher_arguments(
    local_rank: Annotated[int | None, typer.Option("--local_rank", hidden=True, help="Set by deepspeed.")] = None,
) -> None:
    """The deepspeed launcher puts --local_rank=N right after the program, before the command; the rank
    itself is read from LOCAL_RANK, which the launcher also sets."""


CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="Corpus folder (with corpus.json and the tars).")]


@app.command()
@user_errors
def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for data, runs and report.md.")] = Path("quickstart"),
    seeds: Annotated[int | None, typer.Option(help="Seeds; each trains CoAT and its baseline (default 3).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per run (default 400).")] = None,
    train_clips: Annotated[int | None, typer.Option(help="Training clips (default 600).")] = None,
    heldout_clips: Annotated[int | None, typer.Option(help="Held-out clips (default 240).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML with any QuickstartConfig setting (lr, think_tokens, …); flags win.")
    ] = None,
) -> None:
    """The whole method on this machine, no GPU, no download: does the thinking block help?

    Synthesises train and held-out acoustic QA corpora, extracts mel and pitch
    targets, trains the tiny Qwen2-Audio twin twice per seed (CoAT, and the
    --no-think baseline with the same LoRA, data and steps) under DeepSpeed
    ZeRO-2 on 2 CPU ranks, evaluates both by question type, probes them, reads
    out one clip and writes DIR/report.md. About 8 minutes on 2 cores.
    Run it again to resume; Ctrl-C checkpoints the training first.

    Example: [bold]coat-pipe quickstart --out quickstart --seeds 3[/]
    """
    from pipeline.config import load_config
    from pipeline.quickstart import QuickstartConfig, run_quickstart

    overrides = {"seeds": seeds, "steps": steps, "train_clips": train_clips, "heldout_clips": heldout_clips}
    run_quickstart(out_dir, load_config(QuickstartConfig, config, overrides))


@app.command()
@user_errors
def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the shards into.")],
    clips: Annotated[int, typer.Option(help="Number of clips.", min=1)] = 600,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same corpus.")] = 0,
    shard_size: Annotated[int, typer.Option(help="Clips per tar shard.", min=1)] = 200,
    name: Annotated[str, typer.Option(help="Shard name prefix: NAME-000000.tar.")] = "train",
) -> None:
    """Generate the built-in acoustic QA corpus: tones, chirps, notes and noise with exact answers.

    Example: [bold]coat-pipe synth --out data/train --clips 600 --seed 0[/]
    """
    from stages.corpus.synth import QUESTION_TYPES, synth_recipe, write_synth_corpus
    from store_schema.corpus import read_corpus

    recipe = synth_recipe(clips, seed, shard_size, name)
    if (out_dir / "corpus.json").exists():
        corpus = read_corpus(out_dir)
        if corpus.created_by != recipe:
            raise UserError(f"{out_dir} already holds another corpus ({corpus.created_by}); choose another --out")
        out.print(f"{out_dir} already holds this corpus ({recipe}): nothing to do")
        return
    tasks = write_synth_corpus(out_dir, clips, seed, shard_size, name)
    corpus = read_corpus(out_dir)
    rows = [(task, tasks[task]) for task in QUESTION_TYPES] + [("[bold]total", f"[bold]{corpus.samples}")]
    print_table(f"synth corpus → {out_dir}", ["question type", "clips"], rows)
    out.print(f"{len(corpus.shards)} shards, {corpus.seconds / 3600:.3f} h of audio")


SOURCE_FORMATS = ("chat", "hf", "lhotse")


@app.command()
@user_errors
def shard(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the corpus into (new or empty).")],
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
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the stored FLAC.")] = 16000,
    shard_size: Annotated[int, typer.Option(help="Samples per tar shard.", min=1)] = 1000,
    name: Annotated[str, typer.Option(help="Shard name prefix: NAME-000000.tar.")] = "train",
    workers: Annotated[int, typer.Option(help="Decoding processes.", min=1)] = 2,
    max_seconds: Annotated[
        float, typer.Option(help="Longer files are rejected (their header is read before any decoding).", min=0.1)
    ] = 1200.0,
) -> None:
    """Build WebDataset tar shards (16-bit FLAC + json) from a manifest, a folder of audio, or data in the
    shapes it already has (--from chat|hf|lhotse).

    Every unusable row goes to OUT/rejected.jsonl with its file, row and reason; the run goes on.

    Sources are read as streams: memory stays flat in the number of rows.

    Examples: [bold]coat-pipe shard --manifest clips.jsonl --out data/train[/];
    [bold]coat-pipe shard --from chat train.jsonl --out data/train[/];
    [bold]coat-pipe shard --from hf data/aqa --question-column question --answer-column answer --out data/aqa[/];
    [bold]coat-pipe shard --from lhotse cuts.jsonl.gz --out data/asr[/]
    """
    from stages.corpus.shard import build_shards, read_manifest, scan_audio_dir

    if sum(x is not None for x in (manifest, audio_dir, source)) != 1:
        raise UserError("give exactly one of --manifest FILE.jsonl, --audio-dir DIR or --from FORMAT SOURCE")
    rejected: list[dict[str, str]] = []
    if manifest is not None:
        entries, rejected = read_manifest(manifest)
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
    summary = build_shards(entries, out_dir, sample_rate, shard_size, name, workers, rejected, max_seconds=max_seconds)
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
    out.print(f"{summary.seconds / 3600:.3f} h of audio at {sample_rate} Hz")
    if summary.rejected:
        rows = [(r["origin"], r["reason"]) for r in summary.rejected[:30]]
        print_table(f"rejected ({out_dir / 'rejected.jsonl'})", ["input", "reason"], rows)


@app.command()
@user_errors
def extract(
    corpus: CorpusOpt,
    expert: Annotated[str | None, typer.Option(help="Expert name(s), comma-separated: mel,pitch.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file with ExtractConfig settings; flags override it.")
    ] = None,
    batch_seconds: Annotated[float | None, typer.Option(help="Padded audio seconds per expert batch.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers decoding audio.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 …")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16 for model experts.")] = None,
    shard_index: Annotated[int | None, typer.Option(help="This process's slice (default: SLURM array / rank).")] = None,
    num_shards: Annotated[int | None, typer.Option(help="Number of slices the shards are split into.")] = None,
    store_rate: Annotated[float | None, typer.Option(help="Store frame rate in Hz (default 12.5).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo groups that are already complete.")] = False,
    set_option: Annotated[
        list[str] | None,
        typer.Option("--set", help="Expert option, EXPERT.KEY=VALUE, e.g. --set mel.n_mels=64 (repeatable)."),
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(help="Weights: EXPERT=PATH (repeatable), or PATH when one model expert is named."),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option(help="Hub id: EXPERT=HUB_ID (repeatable), or HUB_ID for the one model expert.")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Let transformers run a checkpoint's own code (off by default).")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar (logs, CI).")] = False,
    list_experts: Annotated[
        bool,
        typer.Option(
            "--list-experts",
            is_eager=True,
            callback=lambda v: _list_experts() if v else None,
            help="Print every expert: what it hears, model, rates, kind, what it needs, where its weights are.",
        ),
    ] = False,
) -> None:
    """Stage one: run experts over every shard and write pooled targets to the store beside each tar.

    Decodes each clip once for all experts; skips groups already complete with the same options
    (so a killed run just resumes); splits shards over SLURM array tasks or ranks.

    Example: [bold]coat-pipe extract --corpus data/train --expert mel,pitch[/]
    """
    from pipeline.config import load_config, parse_assignments
    from stages.extract.config import ExtractConfig
    from stages.extract.runner import run_extract

    overrides: dict[str, Any] = {
        "corpus": corpus,
        "experts": expert,
        "batch_seconds": batch_seconds,
        "num_workers": workers,
        "device": device,
        "dtype": dtype,
        "shard_index": shard_index,
        "num_shards": num_shards,
        "store_rate": store_rate,
        "overwrite": overwrite or None,
        "progress": False if no_progress else None,
    }
    if set_option:
        overrides["expert_options"] = parse_assignments(set_option)
    names = [e.strip() for e in (expert or "").split(",") if e.strip()]
    weights = _weights_by_expert(names, [*(checkpoint or []), *(model or [])])
    if weights:
        overrides["checkpoints"] = weights
    if trust_remote_code:
        overrides["trust_remote_code"] = True
    cfg = load_config(ExtractConfig, config, overrides)
    summary = run_extract(cfg)
    _print_extract_summary(summary)


def _weights_by_expert(names: list[str], given: list[str]) -> dict[str, str]:
    """EXPERT=VALUE pairs; a bare VALUE belongs to the one model expert named (mel and pitch have none)."""
    models = [n for n in names if n not in ("mel", "pitch")]
    weights = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep:  # a bare path or hub id (a hub id holds "/", never "=")
            if len(models) != 1:
                raise UserError(f"--checkpoint/--model {item}: say which expert it is for, as EXPERT={item}")
            name, value = models[0], item
        weights[name] = value
    return weights


def _list_experts() -> None:
    from stages.extract.experts import EXPERT_TABLE

    header = ["name", "hears", "model", "rate in → frames", "kind", "needs", "weights"]
    print_table("experts", header, [(n, *(c.replace("->", "→") for c in row)) for n, row in EXPERT_TABLE.items()])
    raise typer.Exit(0)


def _print_extract_summary(summary: Any) -> None:
    statuses = sorted({s for counts in summary.status.values() for s in counts}, key=lambda s: (s != "ok", s))
    rows = [
        (name, *[counts.get(s, 0) for s in statuses], f"{summary.expert_seconds[name]:.1f} s")
        for name, counts in summary.status.items()
    ]
    print_table("extract summary", ["expert", *statuses, "expert time"], rows)
    speed = summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else 0.0
    out.print(
        f"shards: {len(summary.shards_done)} written, {len(summary.shards_skipped)} already complete · "
        f"{summary.clips} clips, {summary.audio_seconds / 3600:.3f} audio-h in {summary.wall_seconds:.1f} s "
        f"({speed:.1f}× realtime)"
    )
    if summary.shards_done:
        names = summary.shards_done
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        out.print(f"written: {shown}")
    if summary.stats_written:
        out.print(f"stats written: {', '.join(f'stats/{e}.json' for e in summary.stats_written)}")
    else:
        out.print("stats not written yet: some shards are not extracted (another slice or process has them)")
    if summary.bad:
        rows = [(b.shard, b.key, b.expert, b.reason, b.message) for b in summary.bad[:30]]
        title = f"clips without targets ({len(summary.bad)}; all in {summary.log_file})"
        print_table(title, ["shard", "key", "expert", "reason", "detail"], rows)


@app.command()
@user_errors
def train(
    corpus: CorpusOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory (config, metrics, checkpoints, final/).")],
    backbone: Annotated[str | None, typer.Option(help="qwen2-audio, qwen2.5-omni, af3, or tiny-<name>.")] = None,
    experts: Annotated[
        str | None, typer.Option(help="Store experts to distil, comma-separated (default: all).")
    ] = None,
    think_tokens: Annotated[int | None, typer.Option(help="K, the thinking positions.")] = None,
    no_think: Annotated[bool, typer.Option("--no-think", help="Baseline: no block, no heads, same LoRA.")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML with TrainConfig settings; flags override it.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    schedule: Annotated[str | None, typer.Option(help="two-stage (align, then joint) or joint.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Clips per rank per micro-step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (warm-up then cosine).")] = None,
    think_layer: Annotated[int | None, typer.Option(help="Hidden-state layer the heads read (default 2/3).")] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    model_path: Annotated[str | None, typer.Option(help="Local dir or hub id of the backbone's weights.")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers per rank.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Checkpoint every N steps (and at the end).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the model init and the data order.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN/checkpoints/latest.")] = False,
    ds_config: Annotated[
        Path | None, typer.Option(help='DeepSpeed JSON; "auto" values are filled in (default launch/ds_zero2.json).')
    ] = None,
) -> None:
    """Stage two: train the CoAT model on tars + store under DeepSpeed ZeRO-2 (one process or many).

    Example: [bold]coat-pipe train --backbone tiny-qwen2-audio --corpus data/train --out runs/coat --steps 100[/]

    Several ranks: [bold]bash launch/train.sh --backbone af3 --corpus data/train --out runs/af3[/] (all local GPUs,
    or 2 CPU ranks), [bold]sbatch launch/train.sh ...[/] on SLURM. SIGTERM or SIGUSR1 make every rank checkpoint
    at the next step and exit with code 75; the same command with --resume continues.
    """
    from pipeline.config import load_config
    from stages.train.config import TrainConfig
    from stages.train.recipe import run_train
    from stages.train.stop_signal import EXIT_INTERRUPTED

    model = {
        "backbone": backbone,
        "think_tokens": think_tokens,
        "no_think": no_think or None,
        "think_layer": think_layer,
        "lora_rank": lora_rank,
        "model_path": model_path,
    }
    overrides: dict[str, Any] = {
        "corpus": corpus,
        "out": out_dir,
        "experts": experts,
        "steps": steps,
        "schedule": schedule,
        "batch_size": batch_size,
        "lr": lr,
        "num_workers": workers,
        "save_every": save_every,
        "seed": seed,
        "resume": resume or None,
        "ds_config": ds_config,
        "model": model,
    }
    result = run_train(load_config(TrainConfig, config, overrides))
    if result["interrupted"]:
        if result["rank"] == 0:
            out.print(f"interrupted at step {result['steps']}; continue with the same command and --resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if result["rank"] == 0:
        out.print(
            f"trained {result['steps']} steps → {result['run']}/final  "
            f"(skipped clips: {result['skipped'] or 'none'}; {result['wall_seconds']:.0f} s)"
        )


@app.command()
@user_errors
def export(
    run: Annotated[Path, typer.Option("--run", help="A training run (its final/ bundle is exported).")],
    out_dir: Annotated[Path, typer.Option("--out", help="A new or empty folder for the exported model.")],
    adapter_only: Annotated[
        bool, typer.Option("--adapter-only", help="A PEFT adapter folder instead of merged weights.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that is not empty.")] = False,
) -> None:
    """A trained run as a plain Hugging Face model folder: merged safetensors, tokenizer with the block's
    tokens, and a chat template whose generation prompt ends with the thinking block.

    transformers loads it with the backbone's own class and AutoProcessor, no project code, no remote
    code; engines that read a model folder and its template serve it unchanged. --adapter-only writes
    LoRA + the block's token rows for peft's PeftModel.from_pretrained on the base model instead.

    Example: [bold]coat-pipe export --run runs/coat --out models/coat-qwen2-audio[/]
    """
    from stages.export.folder import export_run

    result = export_run(run, out_dir, adapter_only, overwrite)
    kind = "PEFT adapter" if adapter_only else "merged model"
    out.print(f"{kind} → {result['out']}: {result['bytes'] / 1e6:.1f} MB in {result['seconds']:.1f} s")


@store_app.command("check")
@user_errors
def store_check(
    corpus: Annotated[Path, typer.Argument(help="Corpus folder.")],
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
def store_info_cmd(corpus: Annotated[Path, typer.Argument(help="Corpus folder.")]) -> None:
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
    corpus: Annotated[Path, typer.Argument(help="Corpus folder.")],
    expert: Annotated[str | None, typer.Option(help="Experts to recompute (default: all found).")] = None,
) -> None:
    """Recompute stats/<expert>.json (per-dimension mean and std over ok clips) from the stored frames.

    Example: [bold]coat-pipe store stats data/train --expert mel[/]
    """
    from store_schema.check import recompute_stats
    from store_schema.corpus import read_corpus
    from store_schema.layout import shard_store_path
    from store_schema.reader import ShardStore
    from store_schema.writer import refuse_links_out

    info = read_corpus(corpus)
    refuse_links_out(info)
    first = shard_store_path(info.tar_path(info.shards[0]))
    names = expert.split(",") if expert else (ShardStore(first).experts() if first.is_dir() else [])
    if not names:
        raise UserError(f"{corpus}: no expert groups found; run coat-pipe extract first")
    for name in names:
        try:
            payload = recompute_stats(info, name)
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise UserError(f"{corpus}: cannot compute {name} stats ({e}); run coat-pipe store check") from None
        out.print(f"stats/{name}.json: {payload['clips']} clips, dim {payload['dim']}")


@bench_app.command("extract")
@user_errors
def bench_extract(
    expert: Annotated[str, typer.Option(help="Expert name(s), comma-separated.")] = "mel,pitch",
    clips: Annotated[int, typer.Option(help="Synthetic clips to run over.", min=1)] = 200,
    workers: Annotated[int, typer.Option(help="DataLoader workers on the full path.")] = 2,
    device: Annotated[str, typer.Option(help="Device for the experts.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16.")] = "float32",
    batch_seconds: Annotated[float, typer.Option(help="Padded audio seconds per expert batch.")] = 240.0,
    workdir: Annotated[Path | None, typer.Option(help="Where to put the corpus (default: a temp dir).")] = None,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Model experts as tiny random instances of their real classes.")
    ] = False,
) -> None:
    """Full `extract` path vs a bare loop of the same experts over waves already in memory.

    Both run in this process on the same synthetic clips; prints audio seconds per second and the ratio.

    Example: [bold]coat-pipe bench extract --expert mel,pitch --clips 200[/]; [bold]--expert whisper --tiny[/]
    """
    from stages.extract.bench import bench_extract as run_bench

    result = run_bench(expert.split(","), clips, workers, device, dtype, batch_seconds, workdir, tiny)
    rows = [
        ("bare loop (waves in memory)", f"{result['bare_seconds']:.2f}", f"{result['bare_speed']:.1f}"),
        ("full extract path", f"{result['full_seconds']:.2f}", f"{result['full_speed']:.1f}"),
    ]
    title = f"bench extract: {expert} on {clips} synthetic clips ({result['audio_seconds']:.0f} s of audio)"
    print_table(title, ["path", "wall s", "audio s / s"], rows)
    out.print(f"ratio full / bare throughput: [bold]{result['ratio']:.3f}[/]")


@bench_app.command("shard")
@user_errors
def bench_shard(
    clips: Annotated[int, typer.Option(help="Clips written in every format.", min=1)] = 200,
    seconds: Annotated[float, typer.Option(help="Seconds per clip.", min=0.1)] = 4.0,
    rows: Annotated[str, typer.Option(help="Row counts of the memory comparison, comma-separated.")] = "1000,100000",
) -> None:
    """`shard` from each source format against today's JSONL manifest on the same audio (audio s / s and
    ratio), and the peak memory of `shard --from chat` over few and many conversation rows.

    Example: [bold]coat-pipe bench shard[/]
    """
    from stages.corpus.bench import bench_shard as run_bench

    counts = tuple(int(r) for r in rows.split(","))
    r = run_bench(clips, seconds, counts)  # type: ignore[arg-type]
    table = [(name, f"{speed:.1f}", f"{r['ratios'][name]:.3f}") for name, speed in r["speeds"].items()]
    print_table(
        f"bench shard: {r['clips']} clips, {r['audio_seconds']:.0f} s of audio",
        ["source", "audio s / s", "ratio"],
        table,
    )
    memory = [(f"{count} rows", f"{mb:.0f} MB") for count, mb in r["peak_rss_mb"].items()]
    print_table("peak memory of shard --from chat (main process)", ["source", "peak RSS"], memory)


@bench_app.command("check")
@user_errors
def bench_check(
    corpus: Annotated[Path | None, typer.Argument(help="An extracted corpus (default: a synthetic one).")] = None,
    clips: Annotated[int, typer.Option(help="Synthetic clips, when no corpus is given.", min=1)] = 600,
    expert: Annotated[str, typer.Option(help="Experts extracted into the synthetic corpus.")] = "mel,pitch",
) -> None:
    """`store check` full (every value, every tar sample) against --quick (structure), in this process.

    Example: [bold]coat-pipe bench check[/]; [bold]coat-pipe bench check data/train[/]
    """
    from stages.extract.bench_check import bench_check as run_bench

    r = run_bench(corpus, clips, expert.split(","))
    if r["findings"]:
        raise UserError(f"{corpus}: the store has problems; run coat-pipe store check first")
    rows = [
        ("--quick (structure)", f"{r['quick_seconds']:.2f}", f"{r['quick_s_per_audio_hour']:.2f}"),
        ("full (every value and sample)", f"{r['full_seconds']:.2f}", f"{r['full_s_per_audio_hour']:.2f}"),
    ]
    title = f"bench check: {r['clips']} clips, {r['audio_hours']:.3f} h of audio"
    print_table(title, ["mode", "wall s", "s / audio-h"], rows)
    out.print(f"ratio full / quick: [bold]{r['ratio']:.2f}[/]")


@bench_app.command("train")
@user_errors
def bench_train(
    backbone: Annotated[str, typer.Option(help="Backbone (a tiny twin runs anywhere).")] = "tiny-qwen2-audio",
    corpus: Annotated[Path | None, typer.Option(help="Extracted corpus (default: a synthetic one).")] = None,
    steps: Annotated[int, typer.Option(help="Timed steps per variant and round.", min=1)] = 10,
    batch_size: Annotated[int, typer.Option(help="Clips per step.", min=1)] = 4,
    think_tokens: Annotated[int, typer.Option(help="K for the CoAT variant.")] = 32,
    workers: Annotated[int, typer.Option(help="DataLoader workers for the stream comparison.")] = 0,
) -> None:
    """CoAT (K thinking tokens, every store expert) vs --no-think step time, and the tar + store stream vs
    the tar stream alone, on the same backbone, batch and clips, in one process.

    Example: [bold]coat-pipe bench train --backbone tiny-qwen2-audio --steps 10[/]
    """
    from stages.train.bench import bench_train as run_bench

    r = run_bench(backbone, corpus, steps, batch_size, think_tokens, workers)
    rows = [
        (f"step time, CoAT K={r['think_tokens']} ({','.join(r['experts'])})", f"{r['coat_step_s'] * 1000:.1f} ms"),
        ("step time, --no-think", f"{r['base_step_s'] * 1000:.1f} ms"),
        ("[bold]ratio CoAT / baseline", f"[bold]{r['step_ratio']:.3f}"),
        ("stream, tar + store", f"{r['stream_store_clips_s']:.1f} clips/s"),
        ("stream, tar only", f"{r['stream_tar_clips_s']:.1f} clips/s"),
        ("[bold]ratio tar + store / tar only", f"[bold]{r['stream_ratio']:.3f}"),
    ]
    print_table(f"bench train: {r['backbone']}, batch {r['batch_size']}, {r['clips']} clips streamed", ["", ""], rows)


@bench_app.command("train-7b")
@user_errors
def bench_train_7b(
    variant: Annotated[str, typer.Option(help="coat or baseline (run each in its own process).")] = "coat",
    steps: Annotated[int, typer.Option(help="Timed steps after two warm-up steps.", min=1)] = 6,
    toy: Annotated[bool, typer.Option("--toy", help="A toy-size model on CPU: checks the script, no figure.")] = False,
) -> None:
    """Real-size random-init Qwen2-Audio-7B, ZeRO-2 + LoRA, K=32, two 30 s clips: step time and peak GPU memory.

    Needs one GPU with ~40 GiB.

    Example: [bold]coat-pipe bench train-7b --variant coat && coat-pipe bench train-7b --variant baseline[/]
    """
    if variant not in ("coat", "baseline"):
        raise UserError(f"--variant must be coat or baseline, got {variant!r}")
    from stages.train.bench_real_size import bench_real_size

    r = bench_real_size(variant == "baseline", steps, toy)
    rows = [
        (
            r["variant"],
            f"{r['params_b']:.2f} B",
            r["tokens"],
            f"{r['step_s']:.3f} s",
            " ".join(f"{t:.3f}" for t in r["steps_s"]),
            f"{r['peak_gib']:.1f} GiB",
        )
    ]
    print_table("bench train-7b", ["variant", "params", "tokens", "median step", "steps", "peak memory"], rows)


@bench_app.command("codecs")
@user_errors
def bench_codecs(
    corpus: Annotated[Path, typer.Argument(help="An extracted corpus; its first shard's groups are measured.")],
) -> None:
    """Compression ratio and speed of candidate codecs on a store's own float16 targets.

    Example: [bold]coat-pipe bench codecs data/train[/]
    """
    from store_schema.codecs import CANDIDATES, FRAME_CODEC, measure_codec
    from store_schema.corpus import read_corpus
    from store_schema.layout import shard_store_path
    from store_schema.reader import ShardStore

    info = read_corpus(corpus)
    path = shard_store_path(info.tar_path(info.shards[0]))
    experts = ShardStore(path).experts() if path.is_dir() else []
    if not experts:
        raise UserError(f"{path}: no expert groups to measure; run coat-pipe extract first")
    rows = []
    for expert in experts:
        frames = ShardStore(path).expert(expert).frames[:]
        for name, codec in CANDIDATES.items():
            m = measure_codec(frames, codec)
            mark = " (in use)" if codec is not None and codec.to_dict() == FRAME_CODEC.to_dict() else ""
            rows.append((expert, name + mark, f"{m['ratio']:.3f}", f"{m['write_mb_s']:.0f}", f"{m['read_mb_s']:.0f}"))
    title = f"store codecs on {path.name} (frames of each expert, float16)"
    print_table(title, ["expert", "codec", "stored / raw", "write MB/s", "read MB/s"], rows)


from pipeline import cli_evaluate  # noqa: E402 - the evaluation commands live in their own module

app.command("generate")(user_errors(cli_evaluate.generate))
app.add_typer(cli_evaluate.eval_app, name="eval")
app.command("probe")(user_errors(cli_evaluate.probe))
bench_app.command("generate")(user_errors(cli_evaluate.bench_generate))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
