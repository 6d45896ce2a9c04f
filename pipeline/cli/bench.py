"""Benchmarks: each one a ratio against a baseline run in the same process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import bench_app
from pipeline.errors import user_errors
from stages.progress import out, print_table
from store_schema.errors import UserError


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
    from stages.bench.extract import bench_extract as run_bench

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
    from stages.bench.shard import bench_shard as run_bench

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
    corpus: Annotated[
        str | None, typer.Argument(metavar="CORPUS", help="An extracted corpus (default: a synthetic one).")
    ] = None,
    clips: Annotated[int, typer.Option(help="Synthetic clips, when no corpus is given.", min=1)] = 600,
    expert: Annotated[str, typer.Option(help="Experts extracted into the synthetic corpus.")] = "mel,pitch",
) -> None:
    """`store check` full (every value, every tar sample) against --quick (structure), in this process.

    Example: [bold]coat-pipe bench check[/]; [bold]coat-pipe bench check data/train[/]
    """
    from stages.bench.store_check import bench_check as run_bench

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
    corpus: Annotated[str | None, typer.Option(help="Extracted corpus (default: a synthetic one).")] = None,
    steps: Annotated[int, typer.Option(help="Timed steps per variant and round.", min=1)] = 10,
    batch_size: Annotated[int, typer.Option(help="Clips per step.", min=1)] = 4,
    think_tokens: Annotated[int, typer.Option(help="K for the CoAT variant.")] = 32,
    workers: Annotated[int, typer.Option(help="DataLoader workers for the stream comparison.")] = 0,
    realistic: Annotated[
        bool,
        typer.Option(
            "--realistic",
            help="Instead: the stream on 1000-clip shards of 10-30 s clips and on a 3-corpus mixture (2 workers), "
            "and duration-budget batches against fixed counts on 1-30 s clips (minutes: the corpora are made).",
        ),
    ] = False,
    workdir: Annotated[Path | None, typer.Option(help="--realistic: where its corpora are made (and kept).")] = None,
) -> None:
    """CoAT (K thinking tokens, every store expert) vs --no-think step time, and the tar + store stream vs
    the tar stream alone, on the same backbone, batch and clips, in one process.

    Examples: [bold]coat-pipe bench train --backbone tiny-qwen2-audio --steps 10[/];
    [bold]coat-pipe bench train --realistic --workdir /tmp/bench-cases[/]
    """
    if realistic:
        from stages.bench.stream_cases import bench_stream_cases

        r = bench_stream_cases(workdir)
        rows = [
            (case, f"{v['store']:.1f}", f"{v['tar']:.1f}", f"{v['ratio']:.3f}") for case, v in r.items() if "ratio" in v
        ]
        print_table("bench train --realistic: the stream (clips/s)", ["case", "tar + store", "tar only", "ratio"], rows)
        rows = [
            (k, f"{v['audio_s_per_s']:.1f}", f"{v['padding_audio']:.4f}", f"{v['padding_tokens']:.3f}")
            for k, v in r["duration"].items()
        ]
        heads = ["batches", "audio s/s (40 steps)", "padded audio (epoch)", "padded tokens (40 steps)"]
        print_table("batches on 1-30 s clips, the same mean audio per batch", heads, rows)
        rows = [(k, f"{v['throughput']:.3f}", f"{v['padded audio']:.3f}") for k, v in r["duration_ratios"].items()]
        print_table("ratios", ["", "throughput", "padded audio"], rows)
        out.print(json.dumps(r))
        return
    from stages.bench.train import bench_train as run_bench

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


@bench_app.command("stream")
@user_errors
def bench_stream(
    corpus: Annotated[
        str | None, typer.Option(help="An extracted corpus in an object store (default: a local S3 endpoint).")
    ] = None,
    local: Annotated[Path | None, typer.Option(help="With --corpus: the same corpus on local disk.")] = None,
    clips: Annotated[int, typer.Option(help="Synthetic clips, without --corpus.", min=8)] = 240,
    batch_size: Annotated[int, typer.Option(help="Clips per batch.", min=1)] = 4,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers (default: train's default).")] = None,
) -> None:
    """The training stream from an object store against the same corpus on local disk: clips/s and their
    ratio, and (on the built-in local S3 endpoint) the requests per clip.

    Examples: [bold]coat-pipe bench stream[/]; [bold]coat-pipe bench stream --corpus s3://b/train --local
    /data/train[/]
    """
    from stages.bench.stream import bench_stream as run_bench

    r = run_bench(clips, batch_size, workers, corpus, local)
    rows = [
        (f"object store ({r['remote']})", f"{r['remote_clips_s']:.1f}"),
        (f"local disk ({r['local']})", f"{r['local_clips_s']:.1f}"),
        ("[bold]ratio object store / local", f"[bold]{r['ratio']:.3f}"),
    ]
    if r["requests_per_clip"] is not None:
        rows.append(("requests per clip", f"{r['requests_per_clip']:.2f}"))
    title = (
        f"bench stream: {r['clips']} clips, {','.join(r['experts'])}, batch {r['batch_size']}, {r['workers']} workers"
    )
    print_table(title, ["source", "clips / s"], rows)


@bench_app.command("plan")
@user_errors
def bench_plan(
    seconds: Annotated[float, typer.Option(help="Seconds per clip.", min=1)] = 20.0,
    batch_size: Annotated[int, typer.Option(help="Clips per rank per step.", min=1)] = 4,
    hidden: Annotated[int, typer.Option(help="Width of the language model.", min=64)] = 512,
    layers: Annotated[int, typer.Option(help="Decoder layers of the language model.", min=1)] = 8,
    steps: Annotated[int, typer.Option(help="Training steps of each run.", min=2)] = 4,
) -> None:
    """`train --plan`'s memory prediction against the peak each of 2 CPU ranks holds, gradient checkpointing off
    and on, and each one's median step time.

    Example: [bold]coat-pipe bench plan[/]
    """
    from stages.bench.plan import bench_plan as run

    r = run(seconds=seconds, batch_size=batch_size, steps=steps, hidden=hidden, layers=layers)
    gib = 2**30
    rows = [
        (
            f"checkpointing {mode}",
            f"{v['predicted_bytes'] / gib:.2f} GiB",
            f"{v['measured_bytes'] / gib:.2f} GiB",
            f"{v['ratio']:.2f}",
            f"{v['step_s']:.2f} s",
        )
        for mode, v in r.items()
    ]
    print_table("bench plan (2 CPU ranks)", ["run", "plan", "measured peak", "plan / measured", "step"], rows)
    out.print(f"step time, checkpointing on / off: {r['on']['step_s'] / r['off']['step_s']:.2f}")
    out.print(json.dumps(r))


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
    from stages.bench.real_size import bench_real_size

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
    corpus: Annotated[
        str, typer.Argument(metavar="CORPUS", help="An extracted corpus; its first shard's groups are measured.")
    ],
) -> None:
    """Compression ratio and speed of candidate codecs on a store's own float16 targets.

    Example: [bold]coat-pipe bench codecs data/train[/]
    """
    from store_schema.codecs import bench_codecs as run_bench
    from store_schema.corpus import read_corpus

    path, measured = run_bench(read_corpus(corpus))
    rows = [
        (
            expert,
            name + (" (in use)" if in_use else ""),
            f"{m['ratio']:.3f}",
            f"{m['write_mb_s']:.0f}",
            f"{m['read_mb_s']:.0f}",
        )
        for expert, name, in_use, m in measured
    ]
    title = f"store codecs on {path.name} (frames of each expert, float16)"
    print_table(title, ["expert", "codec", "stored / raw", "write MB/s", "read MB/s"], rows)


@bench_app.command("generate")
@user_errors
def bench_generate(
    backbone: Annotated[str, typer.Option(help="Backbone (tiny twins need no download).")] = "tiny-qwen2-audio",
    think_tokens: Annotated[int, typer.Option(help="K of the CoAT model.")] = 32,
    seconds: Annotated[float, typer.Option(help="Audio seconds per prompt.")] = 10.0,
    batch_size: Annotated[int, typer.Option(help="Prompts per generate call.")] = 1,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens decoded per answer.")] = 32,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the median is reported).")] = 5,
    device: Annotated[str, typer.Option(help="cpu, cuda …")] = "cpu",
    exports: Annotated[
        str | None,
        typer.Option(help="COAT_DIR,BASE_DIR: two `coat-pipe export` folders, run through plain generate."),
    ] = None,
) -> None:
    """Time to first token and per-token decode time: CoAT (K thinking tokens) against the baseline.

    Example: [bold]coat-pipe bench generate --think-tokens 32 --max-new-tokens 32[/];
    exported models: [bold]coat-pipe bench generate --exports models/coat,models/base[/]
    """
    from stages.bench.generate import bench_exports
    from stages.bench.generate import bench_generate as run

    if exports is not None:
        folders = [Path(f) for f in exports.split(",")]
        if len(folders) != 2 or not all((f / "coat_pipe.json").is_file() for f in folders):
            raise UserError(f"--exports {exports}: expected COAT_DIR,BASE_DIR, two folders from coat-pipe export")
        result = bench_exports(folders[0], folders[1], seconds, batch_size, max_new_tokens, repeats, device)
    else:
        result = run(backbone, think_tokens, seconds, batch_size, max_new_tokens, repeats, device)
    rows = [(k, f"{v:.4g}") for k, v in result.items()]
    print_table("bench generate (CoAT / baseline, same process)", ["measure", "value"], rows)
    out.print(json.dumps(result))
