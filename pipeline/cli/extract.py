"""Stage one: `extract` and its summary, `--list-experts`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.app import CorpusOpt, app
from pipeline.errors import user_errors
from stages.progress import out, print_table


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
    from stages.config_files import load_config, parse_assignments
    from stages.extract.config import ExtractConfig
    from stages.extract.experts import weights_by_expert
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
        overrides["expert_options"] = parse_assignments(
            set_option, depth=2, shape="EXPERT.OPTION=VALUE, e.g. --set mel.n_mels=64"
        )
    names = [e.strip() for e in (expert or "").split(",") if e.strip()]
    weights = weights_by_expert(names, [*(checkpoint or []), *(model or [])])
    if weights:
        overrides["checkpoints"] = weights
    if trust_remote_code:
        overrides["trust_remote_code"] = True
    cfg = load_config(ExtractConfig, config, overrides)
    summary = run_extract(cfg)
    _print_extract_summary(summary)


def _list_experts() -> None:
    from rich.markup import escape

    from stages.extract.experts import expert_table

    header = ["name", "hears", "model", "rate in → frames", "kind", "needs", "weights"]
    rows = [
        (n, *(escape(c.replace("->", "→")) for c in row)) for n, row in expert_table().items()
    ]  # "[emotion2vec]" is text
    print_table("experts", header, rows)
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
