"""The text the tiny twins' tokenizer is trained on: a few generic lines, and the questions and answers of
the task the twins will be asked about, handed in by whoever sets that task (the lab's synth corpus does,
on import). Kept free of heavy imports so that handing words in costs nothing."""

from __future__ import annotations

import hashlib

GENERIC_HEAD = [
    "You are a helpful assistant.",
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory "
    "and visual inputs, as well as generating text and speech.",
    "system user assistant Audio 1: Audio 2:",
]
TRANSCRIBE = "Transcribe the speech in the audio. Transcribe the input speech. What is heard in the audio?"
ALPHABET = "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9 . , ? ! : ; ' \" ( ) - A B C"

_task_questions: list[str] = []
_task_answers: list[str] = []


def add_task_text(questions: list[str], answers: list[str]) -> None:
    """Questions (one line each) and answer words the twins' vocabulary should hold as whole tokens.
    Adding the same text twice changes nothing, so importing a lab module again is harmless."""
    _task_questions.extend(q for q in questions if q not in _task_questions)
    _task_answers.extend(a for a in answers if a not in _task_answers)


def tokenizer_text() -> list[str]:
    """Every line the BPE is trained on, in order."""
    # Answers open the assistant turn right after a newline, where no space precedes them: one per line,
    # so that BPE learns them as whole words in that position too (not "f al l ing").
    answers = ["\n".join(_task_answers)] if _task_answers else []
    return [*GENERIC_HEAD, *_task_questions, TRANSCRIBE, *answers, ALPHABET]


def text_digest() -> str:
    """Names the twins built from this text in the cache: other words, other twins."""
    return hashlib.sha256("\x00".join(tokenizer_text()).encode()).hexdigest()[:8]
