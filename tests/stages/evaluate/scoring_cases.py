"""Predictions of every kind the MMAU/MMAR rule must judge, made deterministically from a manifest's rows,
and a small MMAR-format manifest written for these tests.

`fixtures/official_scores.json` holds what the benchmarks' own evaluation scripts printed for exactly these
predictions (numbers only; how it was made is written there). test_official_scores.py scores the same
predictions with `coat-pipe eval score` and compares."""

from __future__ import annotations

import random
from typing import Any

FILLERS = ["I think it is", "It sounds like", "Answer:", "The audio suggests", ""]


def prediction_for(row: dict[str, Any], index: int) -> str:
    """One of ten kinds of answer, chosen by the row's index: right, right in a sentence, wrong, two
    choices, a letter, empty, unrelated, the answer's first word only, shouted, a wrong choice quoted."""
    rng = random.Random(index)
    choices = [str(c) for c in row["choices"]]
    answer = str(row["answer"])
    wrong = [c for c in choices if c != answer] or ["none of these"]
    kind = index % 10
    if kind == 0:
        return answer
    if kind == 1:
        return f"{rng.choice(FILLERS)} {answer.lower()}.".strip()
    if kind == 2:
        return rng.choice(wrong)
    if kind == 3:
        pair = [answer, rng.choice(wrong)]
        rng.shuffle(pair)
        return " or ".join(pair)
    if kind == 4:
        return f"({'ABCD'[rng.randrange(min(4, len(choices)))]})"
    if kind == 5:
        return ""
    if kind == 6:
        return "I cannot tell from this recording."
    if kind == 7:
        return answer.split()[0] if answer.split() else answer
    if kind == 8:
        return f"{answer.upper()}!!"
    return f'Not "{rng.choice(wrong)}", it is {answer}'


MODALITIES = ["sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech"]
CATEGORIES = ["Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer"]
CHOICE_SETS = [
    ["Dog barking", "Dog growling", "Cat meowing", "Bird singing"],
    ["Rising", "Falling", "Flat"],
    ["One", "Two", "Three", "Four"],
    ["A violin", "A cello", "A piano", "A flute"],
    ["Happy", "Sad", "Angry", "Neutral"],
    ["In a car", "In a church", "Outdoors in the rain", "In a small room"],
    ["Male speaker", "Female speaker", "Two speakers", "A child"],
]


def mmar_rows(count: int = 70) -> list[dict[str, Any]]:
    """MMAR-format rows (written here, not MMAR's own questions) over its modality and category values."""
    rows = []
    for index in range(count):
        rng = random.Random(1000 + index)
        choices = CHOICE_SETS[index % len(CHOICE_SETS)]
        rows.append(
            {
                "id": f"case{index:03d}",
                "audio_path": f"./audio/case{index:03d}.wav",
                "question": "Which option describes the recording?",
                "choices": choices,
                "answer": rng.choice(choices),
                "modality": MODALITIES[index % len(MODALITIES)],
                "category": CATEGORIES[(index // 3) % len(CATEGORIES)],
                "sub-category": f"group {index % 5}",
            }
        )
    return rows
