"""The README's expert and backbone tables list exactly what the registries hold, and its commands name real
commands and options."""

import re
from pathlib import Path

from stages.extract.experts import EXPERTS, expert_class
from stages.train.backbones import BACKBONES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table_names(heading: str) -> list[str]:
    """The first column's `names` of the table under `### heading`."""
    section = README.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def _table_rows(heading: str) -> list[list[str]]:
    section = README.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| `")]


def test_the_expert_table_is_the_registry():
    """Every expert, in the registry's order, with the kind its class declares."""
    assert _table_names("Experts") == list(EXPERTS)
    for row in _table_rows("Experts"):
        assert row[4] == expert_class(row[0].strip("`")).kind, row


def test_the_backbone_table_is_the_registry():
    assert _table_names("Backbones") == list(BACKBONES)


def test_every_readme_command_is_a_command_with_those_options():
    """Each `coat-pipe …` line of the README's code blocks: its command exists and takes every option given."""
    from tests.pipeline.test_cli import _options_by_command

    options = _options_by_command()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL))
    pieces = [p for line in blocks.replace("\\\n", " ").splitlines() for p in line.split("&&")]
    commands = [m.groups() for p in pieces if (m := re.search(r"coat-pipe ((?:[a-z][a-z0-9-]* ?)+)(.*)", p))]
    assert len(commands) >= 9  # quickstart, shard, train --plan, store check and info, eval twice, compare, …
    for words, rest in commands:
        words = words.split()
        path = " ".join(w for i, w in enumerate(words) if " ".join(words[: i + 1]) in options)
        assert path in options, words
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            assert flag in options[path], (path, flag)
