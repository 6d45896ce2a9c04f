"""How a multiple-choice question is put to the model: a template and an optional system prompt.

    coat     the project's default: the question, the lettered options, "Answer with the option's text."
    r1-aqa   "{question} Please choose the answer from the following options: {choices}. Output the final
             answer in <answer> </answer>." with the choices as a Python list: the prompt R1-AQA published
             for MMAU and that later audio-reasoning work (Ke-Omni-R, NeMo-RL's MMAU set) reuses

A template may use {question}, {options} (one "(A) text" line each) and {choices} (the list, ['a', 'b']).
`--prompt-file` takes YAML with `template:` and `system:`. The answer inside <answer>…</answer>, when a
prediction has those tags, is what is scored.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from stages.config_files import load_yaml
from stages.evaluate.scoring import LETTERS
from store_schema.errors import UserError


@dataclass(frozen=True)
class PromptFormat:
    template: str
    system: str | None = None

    def render(self, question: str, choices: list[str]) -> str:
        options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
        try:
            return self.template.format(question=question, options=options, choices=repr(list(choices)))
        except (KeyError, IndexError, ValueError) as e:
            raise UserError(
                f"prompt template {self.template!r}: {e!r} (it may use {{question}}, {{options}}, {{choices}})"
            ) from None

    def record(self) -> dict[str, str | None]:
        return asdict(self)


PRESETS = {
    "coat": PromptFormat("{question}\nChoose one of the options:\n{options}\nAnswer with the option's text."),
    "r1-aqa": PromptFormat(
        "{question} Please choose the answer from the following options: {choices}. "
        "Output the final answer in <answer> </answer>."
    ),
}


def prompt_format(preset: str = "coat", template: str | None = None, system: str | None = None,
                  file: Path | None = None) -> PromptFormat:  # fmt: skip
    """The preset, then a file's template and system, then the flags' (each wins over what came before)."""
    if preset not in PRESETS:
        raise UserError(f"--prompt-preset {preset!r}: one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    if file is not None:
        try:
            loaded = load_yaml(Path(file).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise UserError(
                f"{file}: not a readable YAML prompt file ({(str(e).splitlines() or [type(e).__name__])[0]})"
            ) from None
        if not isinstance(loaded, dict) or set(loaded) - {"template", "system"}:
            raise UserError(f"{file}: expected a mapping with `template:` and optionally `system:`")
        chosen = PromptFormat(str(loaded.get("template", chosen.template)), loaded.get("system", chosen.system))
    return PromptFormat(template or chosen.template, system if system is not None else chosen.system)


def answer_inside_tags(prediction: str) -> str:
    """The text inside <answer>…</answer> when the prediction has those tags, else the prediction."""
    found = re.search(r"<answer>(.*?)</answer>", prediction, flags=re.DOTALL | re.IGNORECASE)
    return found.group(1).strip() if found else prediction
