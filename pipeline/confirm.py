"""`coat-pipe quickstart --confirm`: a pre-registered experiment (docs/EXPERIMENTS.md: the fourth, `--design fourth`;
the sixth and the seventh, the default), the powered design the default quickstart only demonstrates.

    DIR/data/{train,validation,test}   synth corpora of the target-carried question types, three seeds
    DIR/runs/{base,control,coat,oracle}-seedN   `coat-pipe train` runs, each scored on the validation split
                                       while training (metrics.jsonl) and once on the test split (eval/)
    DIR/report.md, DIR/report/         the registered analysis (pipeline/confirm_report.py)

The layout, the twin, the training launch and resuming are the quickstart's (pipeline/quickstart.py); what
differs: three splits, four arms, the validation split in every run, likelihood scoring of the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.quickstart import Quickstart, in_workers
from pipeline.quickstart_setup import DESIGNS, SPLIT_SEEDS, ConfirmConfig, design_of
from stages.progress import console


class Confirm(Quickstart):
    cfg: ConfirmConfig

    def phases(self) -> list[tuple[str, Callable[[], None]]]:
        cfg = self.cfg
        return [
            ("synth the train, validation and test splits", self.synth),
            (f"extract {','.join(cfg.extracted)} into the three stores", self.extract),
            ("pretrain the tiny Qwen2-Audio twin (once per machine)", self.build_model),
            (f"train {', '.join(cfg.arms)}: {cfg.seeds} seed(s), {cfg.ranks} ranks, then validation", self.train),
            ("score every run on the test split (likelihood)", self.evaluate),
        ]

    def same_design(self, held: dict[str, Any], wanted: dict[str, Any]) -> bool:
        """Equal, or equal but for λ arms added (`--doses`): the runs DIR holds stay what they were, so the
        dose-response reuses the control (λ = 0) and CoAT (λ = 1) runs of the design it extends."""

        def others(settings: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in settings.items() if k != "doses"}

        held = self.read_back(held)
        return others(held) == others(wanted) and set(held["doses"]) <= set(wanted["doses"])

    def refusal_hint(self, held: dict[str, Any]) -> str:
        """A folder made by another registered design (the default design changes with each registration):
        the --design that resumes it."""
        made_by = design_of(held)
        if made_by is None or DESIGNS[made_by] is type(self.cfg):
            return ""
        return f", or resume it with --design {made_by}, the design it was made with"

    def splits(self) -> list[tuple[Path, int, int, str]]:
        cfg = self.cfg
        return [
            (self.train_corpus, cfg.train_clips, SPLIT_SEEDS["train"], "train"),
            (self.validation, cfg.validation_clips, SPLIT_SEEDS["validation"], "validation"),
            (self.heldout, cfg.heldout_clips, SPLIT_SEEDS["test"], "test"),
        ]

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.cfg.tasks

    @property
    def seconds_range(self) -> tuple[float, float]:
        """Every clip `clip_seconds` long when set (then "half" of a clip is the same span in every clip)."""
        length = self.cfg.clip_seconds
        return super().seconds_range if length is None else (length, length)

    def shared_settings(self) -> dict[str, Any]:
        """The quickstart's, with the validation split scored at the end of every run."""
        validation = [{"path": str(self.validation.resolve()), "name": "validation"}]
        return super().shared_settings() | {"val_corpora": validation, "report_to": []}

    def evaluate(self) -> None:
        for name, accuracy in in_workers(score_test, self.unscored(), self.cfg.ranks):
            console.print(f"  {name}: test accuracy {100 * accuracy:.1f} % by likelihood")


def score_test(run: Path, test: Path) -> float:
    """Score one run on the test split by likelihood (the registered scoring); its accuracy."""
    from stages.evaluate.run_eval import run_eval

    metrics, _ = run_eval(  # called only while RUN/eval has no metrics.json: what is there is a leftover
        run, "synth", test, run / "eval", batch_size=16, scoring="likelihood", progress=False, overwrite=True
    )
    return metrics["accuracy"]


def run_confirm(out: Path, cfg: ConfirmConfig) -> Path:
    """Every phase, then the registered analysis; returns the report's path."""
    from pipeline.confirm_report import read_confirm, write_confirm_report
    from pipeline.quickstart import run_design

    return run_design(Confirm(out, cfg), read_confirm, write_confirm_report)
