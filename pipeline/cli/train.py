"""Stage two, what it starts from and what leaves it: `twin`, `train`, `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.app import app
from pipeline.errors import user_errors
from stages.progress import out


def _default(field: str) -> str:
    """ " [default: X]" for a TrainConfig (or `model.`) setting: the flags default to None so that a --config
    file and --set can fill them, and the help shows what the typed config falls back to."""
    from stages.train.config import ModelConfig, TrainConfig

    config, name = (ModelConfig, field.removeprefix("model.")) if field.startswith("model.") else (TrainConfig, field)
    info = config.model_fields[name]
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, list):
        value = ",".join(map(str, value)) or "none"
    if value is None:
        return ""
    return (
        f" \\[default: {Path(value).name if isinstance(value, Path) else value}]"  # \\[ is a literal bracket for rich
    )


@app.command()
@user_errors
def train(
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus",
            "-c",
            help="Corpus folder with tars + store, or s3://… gs://… URL. Repeat it for a mixture, each as "
            "[NAME=]PATH[:WEIGHT] (default weight 1); per-corpus experts: `corpora:` in --config.",
        ),
    ] = None,
    val_corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--val-corpus",
            help="A validation corpus, [NAME=]PATH (repeatable): scored every --eval-every steps and at the end; "
            "the best checkpoint is kept as `best`.",
        ),
    ] = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps \\[default: at the end only].")] = None,
    batch_seconds: Annotated[
        float | None,
        typer.Option(
            help="Audio seconds per rank per micro-step (clips × the longest clip): batches filled from duration "
            "buckets instead of --batch-size clips (which then caps a batch)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory (config, metrics, checkpoints, final/); with --sweep, their parent."),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(help="Required: qwen2-audio, qwen2.5-omni, af3, or a tiny- twin (tiny-qwen2-audio …)."),
    ] = None,
    experts: Annotated[
        str | None,
        typer.Option(help="Store experts to distil, comma-separated \\[default: every expert in the store]."),
    ] = None,
    think_tokens: Annotated[
        int | None, typer.Option(help="K, the thinking positions." + _default("model.think_tokens"))
    ] = None,
    no_think: Annotated[bool, typer.Option("--no-think", help="Baseline: no block, no heads, same LoRA.")] = False,
    block_control: Annotated[
        bool,
        typer.Option(
            "--block-control",
            help="Control for the supervision: the same block and heads, λ = 0 (distill_weight 0), so the "
            "block's positions and rows train through the answer loss alone.",
        ),
    ] = False,
    config: Annotated[Path | None, typer.Option(help="YAML with TrainConfig settings; flags override it.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps." + _default("steps"))] = None,
    schedule: Annotated[
        str | None, typer.Option(help="two-stage (align, then joint) or joint." + _default("schedule"))
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Clips per rank per micro-step." + _default("batch_size"))
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (warm-up then cosine)." + _default("lr"))] = None,
    think_layer: Annotated[
        int | None, typer.Option(help="Hidden-state layer the heads read \\[default: 2/3 of the depth].")
    ] = None,
    lora_rank: Annotated[
        int | None, typer.Option(help="LoRA rank; 0 trains the whole LM." + _default("model.lora_rank"))
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Local dir or hub id of the backbone's weights \\[default: its hub id].")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16, "
            "float16." + _default("model.dtype")
        ),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute each layer in the backward pass instead of storing its activations \\[default: on for "
            "the real backbones, off for the tiny twins].",
            show_default=False,
        ),
    ] = None,
    attn_implementation: Annotated[
        str | None,
        typer.Option(
            help="sdpa, flash_attention_2 (needs flash-attn and a GPU) or eager."
            + _default("model.attn_implementation")
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers per rank." + _default("num_workers"))] = None,
    save_every: Annotated[
        int | None, typer.Option(help="Checkpoint every N steps (and at the end)." + _default("save_every"))
    ] = None,
    keep_checkpoints: Annotated[
        int | None,
        typer.Option(help="Checkpoints kept: the newest N (and latest's, best's)." + _default("keep_checkpoints")),
    ] = None,
    report_to: Annotated[
        str | None,
        typer.Option(help="Trackers, comma-separated: tensorboard, wandb, mlflow." + _default("report_to")),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the model init and the data order." + _default("seed"))
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from RUN/checkpoints/latest.")] = False,
    ds_config: Annotated[
        Path | None, typer.Option(help='DeepSpeed JSON; "auto" values are filled in.' + _default("ds_config"))
    ] = None,
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="YAML list of runs to train one after another in the same ranks (one launch): each entry has a "
            "name (its folder under --out) and TrainConfig settings that win over the command's own.",
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Train nothing, download nothing: build the backbone at its real size on PyTorch's meta device "
            "and print parameters per part, per-GPU memory under ZeRO-2, checkpoint size and tokens per step.",
        ),
    ] = False,
    plan_gpus: Annotated[int, typer.Option(help="--plan: GPUs (world size).", min=1)] = 8,
    plan_gpu_memory: Annotated[str, typer.Option(help="--plan: memory per GPU, e.g. 80GiB, 40GB.")] = "80GiB",
    plan_seconds: Annotated[
        float | None, typer.Option(help="--plan: audio seconds per clip \\[default: the backbone's window, 30 s].")
    ] = None,
    set_option: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any TrainConfig setting, KEY=VALUE (repeatable): --set warmup_steps=20 --set model.lora_alpha=64. "
            "Named flags win over --set, and --set over --config.",
        ),
    ] = None,
) -> None:
    """Stage two: train the CoAT model on tars + store under DeepSpeed ZeRO-2 (one process or many).

    Example: [bold]coat-pipe train --backbone tiny-qwen2-audio --corpus data/train --out runs/coat --steps 100[/]

    Before a cluster job: [bold]coat-pipe train --plan --backbone qwen2-audio --plan-gpus 32 --batch-size 2[/] (what
    fits, what a checkpoint weighs). Several ranks: [bold]bash launch/train.sh --backbone af3 --corpus data/train
    --out runs/af3[/] (all local GPUs, or 2 CPU ranks), [bold]sbatch launch/train.sh ...[/] on SLURM. SIGTERM or
    SIGUSR1 make every rank checkpoint at the next step and exit with code 75; the same command with --resume
    continues.

    Several runs in one launch: [bold]bash launch/train.sh --config common.yaml --corpus data/train --out runs
    --sweep arms.yaml[/], where arms.yaml lists [bold]- {name: base, model: {no_think: true}}[/] and so on
    (stages/train/sweep.py).
    """
    from stages.config_files import load_config, merge_settings, parse_assignments
    from stages.train.config import TrainConfig
    from stages.train.sweep import sweep_configs

    model = {
        "backbone": backbone,
        "think_tokens": think_tokens,
        "no_think": no_think or None,
        "distill_weight": 0.0 if block_control else None,
        "think_layer": think_layer,
        "lora_rank": lora_rank,
        "model_path": model_path,
        "dtype": dtype,
        "gradient_checkpointing": gradient_checkpointing,
        "attn_implementation": attn_implementation,
    }
    from stages.train.config import parse_corpus_flag

    given = [parse_corpus_flag(c) for c in corpus or []]
    one = len(given) == 1 and set(given[0]) == {"path"}
    overrides: dict[str, Any] = {
        "corpus": given[0]["path"] if one else None,
        "corpora": given if given and not one else None,
        "val_corpora": [parse_corpus_flag(c) for c in val_corpus] if val_corpus else None,
        "eval_every": eval_every,
        "batch_seconds": batch_seconds,
        "out": out_dir,
        "experts": experts,
        "steps": steps,
        "schedule": schedule,
        "batch_size": batch_size,
        "lr": lr,
        "num_workers": workers,
        "save_every": save_every,
        "keep_checkpoints": keep_checkpoints,
        "report_to": report_to,
        "seed": seed,
        "resume": resume or None,
        "ds_config": ds_config,
        "model": model,
    }
    settings = merge_settings(parse_assignments(set_option, shape="KEY=VALUE or SECTION.KEY=VALUE"), overrides)
    if plan:  # a plan needs no corpus and no run folder: placeholders stand in for them
        from stages.train.plan import parse_memory, plan_training, print_plan

        placeholder = {"out": Path(".")} | (
            {} if settings.get("corpora") or settings.get("corpus") else {"corpus": "."}
        )
        cfg = load_config(TrainConfig, config, merge_settings(placeholder, settings))
        memory = parse_memory(plan_gpu_memory)
        print_plan(plan_training(cfg, plan_gpus, memory, plan_seconds), memory)
        return
    runs = [load_config(TrainConfig, config, settings)] if sweep is None else sweep_configs(sweep, config, settings)
    from stages.train.recipe import check_runs, run_train
    from stages.train.stop_signal import EXIT_INTERRUPTED

    if len(runs) > 1:  # a sweep's last run refused after hours of its first ones is a night lost
        check_runs(runs)
    for cfg in runs:  # a sweep's runs in order
        result = run_train(cfg)
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
def twin(
    steps: Annotated[int | None, typer.Option(help="Optimizer steps of the full fine-tune (default 300).")] = None,
    train_clips: Annotated[int | None, typer.Option(help="Pretraining clips (default 1200).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of TwinRecipe settings; flags override it.")] = None,
) -> None:
    """The pretrained tiny Qwen2-Audio twin the quickstart's runs start from: built once per machine, then
    found in the cache by its recipe. Every weight of the random twin is fine-tuned on a synth task that no
    evaluated question asks ("Describe the sounds in the clip and how long it is."); its held-out score on
    that task is printed and kept in the folder's twin.json.

    Example: [bold]coat-pipe twin[/], then [bold]coat-pipe train --backbone tiny-qwen2-audio --model-path FOLDER ...[/]
    """
    import json

    from stages.config_files import load_config
    from stages.lab.pretrained_twin import TwinRecipe, pretrained_twin

    recipe = load_config(TwinRecipe, config, {"steps": steps, "train_clips": train_clips})
    folder = pretrained_twin(recipe)
    record = json.loads((folder / "twin.json").read_text())
    held = record["heldout"]
    out.print(f"pretrained twin: {folder}  (built in {record['build_seconds']:.0f} s)")
    out.print(
        f"held-out descriptions ({held['clips']} clips): {100 * held['exact']:.1f} % exact, "
        f"kinds of sound {100 * held['kinds']:.1f} %, length {100 * held['length']:.1f} %"
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
