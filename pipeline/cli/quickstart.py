"""`coat-pipe quickstart`: the whole method on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.app import app
from pipeline.errors import user_errors
from store_schema.errors import UserError

# `--confirm`'s design: the latest registration (pipeline.quickstart_setup.DESIGNS, imported only when run so
# that --help stays fast)
DEFAULT_DESIGN = "seventh"


def parse_doses(text: str) -> list[float]:
    """'0.3,3' -> [0.3, 3.0]; UserError naming what is not a number."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--doses {text!r}: comma-separated numbers, e.g. 0.3,3") from None


@app.command()
@user_errors
def quickstart(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for data, runs and report.md.")] = Path("quickstart"),
    seeds: Annotated[
        int | None, typer.Option(help="Seeds; each trains every arm once (default 3; --confirm 6).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps per run (default 400).")] = None,
    train_clips: Annotated[int | None, typer.Option(help="Training clips (default 600; --confirm 1200).")] = None,
    heldout_clips: Annotated[
        int | None, typer.Option(help="Held-out clips (default 240; --confirm: the test split, 1200).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML of QuickstartConfig settings; under train:, TrainConfig's (lr, model.lora_rank …)."),
    ] = None,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="A pre-registered, powered design instead (docs/EXPERIMENTS.md; --design picks which): train, "
            "validation and test splits of pitch_level, pitch_direction and louder_half; 6 seeds of baseline, "
            "control, CoAT and oracle; likelihood scoring of 1200 test clips. About 50 minutes on 2 cores; "
            "resumes like the default. --out defaults to quickstart-confirm.",
        ),
    ] = False,
    design: Annotated[
        str,
        typer.Option(
            help="With --confirm: which registered design (docs/EXPERIMENTS.md). seventh: the sixth from a twin "
            "pretrained four times as long; sixth: every clip 4 s, a twin with a 4 s window, the whole audio "
            "encoder trained, 500 steps; fourth: 1-8 s clips, the encoder's LoRA, 400 steps; pitch-class: the "
            "fourth's training on note_name, CoAT with the pitch class's sine and cosine added to the pitch "
            "targets against CoAT with cents alone. The results of each are in docs/EXPERIMENTS.md.",
        ),
    ] = DEFAULT_DESIGN,
    doses: Annotated[
        str | None,
        typer.Option(
            help="With --confirm: more CoAT arms at these λ, comma-separated (the fifth registration's "
            "dose-response: 0.3,3). Given to a finished --confirm folder, only the new arms train and are scored; "
            "the control (λ = 0) and CoAT (λ = 1) runs are reused.",
        ),
    ] = None,
) -> None:
    """The whole method on this machine, no GPU, no download: does the thinking block help?

    Synthesises train and held-out acoustic QA corpora, extracts mel and pitch
    targets, trains the tiny Qwen2-Audio twin three times per seed (CoAT; the
    --no-think baseline; the --block-control arm, CoAT's block with λ = 0),
    from the same LoRA init, data and steps, under DeepSpeed ZeRO-2 on 2 CPU
    ranks, scores each on the held-out split by question type (generated and
    likelihood-ranked answers), compares CoAT with the other two arms (paired
    intervals, McNemar's p), probes them, reads out one clip and writes
    DIR/report.md. About 12 minutes on 2 cores the first time (the twin is
    pretrained once), 10-11 after. Run it again to resume; Ctrl-C checkpoints
    the training first.

    --confirm runs a pre-registered confirmatory design instead (splits, 6
    seeds, an oracle arm as positive control; its report gives a CoAT verdict
    only if the oracle beats the control). --design picks which (seventh, the
    default, sixth, fourth or pitch-class); --doses adds CoAT arms at other λ
    to a finished one.

    Example: [bold]coat-pipe quickstart --out quickstart --seeds 3[/]
    """
    from pipeline.confirm import run_confirm
    from pipeline.quickstart import run_quickstart
    from pipeline.quickstart_setup import DESIGNS, QuickstartConfig
    from stages.config_files import load_config

    overrides: dict[str, Any] = {"seeds": seeds, "train_clips": train_clips, "heldout_clips": heldout_clips}
    overrides["train"] = {"steps": steps}
    if (doses is not None or design != DEFAULT_DESIGN) and not confirm:
        raise UserError("--doses and --design choose within the confirmatory design: give them with --confirm")
    if design not in DESIGNS:
        raise UserError(f"--design {design!r}: one of {', '.join(DESIGNS)}")
    if confirm:
        if doses is not None:
            overrides["doses"] = parse_doses(doses)
        out = out_dir if out_dir != Path("quickstart") else Path("quickstart-confirm")
        run_confirm(out, load_config(DESIGNS[design], config, overrides))
    else:
        run_quickstart(out_dir, load_config(QuickstartConfig, config, overrides))
