"""Scoring rules: the MMAU/MMAR string match, a choice parser, label match and corpus-level WER.

Each rule is a pure function of strings, so saved predictions can be re-scored without a model.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

WORD = re.compile(r"\b\w+\b")
LETTERS = string.ascii_uppercase


def words(text: str) -> set[str]:
    """Lower-cased `\\b\\w+\\b` tokens: the unit of the MMAU and MMAR scorers."""
    return set(WORD.findall(text.lower()))


def string_match(prediction: str, answer: str, choices: Sequence[str]) -> bool:
    """The MMAU/MMAR rule: correct when the prediction holds every word of the answer and no word
    that belongs only to a wrong choice (words a wrong choice shares with the answer do not count).
    An empty prediction is wrong."""
    predicted, correct = words(prediction), words(answer)
    if not predicted:
        return False
    only_wrong: set[str] = set()
    for choice in choices:
        tokens = words(choice)
        if tokens != correct:  # the answer itself, however often it is listed, is not a wrong choice
            only_wrong |= tokens - correct
    return correct <= predicted and predicted.isdisjoint(only_wrong)


LETTER_ANSWER = re.compile(r"^\s*(?:\(\s*([A-Z])\s*\)|([A-Z])\s*[.):]|([A-Z])\s*$)")
LETTER_PHRASE = re.compile(r"\b(?:answer|option|choice)\s*(?:is\s*)?[:(]?\s*\(?([A-Z])\b\)?", re.IGNORECASE)


def parse_choice(prediction: str, choices: Sequence[str]) -> int | None:
    """The second parser: which choice the prediction names, by letter or by text; None when unclear.

    1. A leading letter: "B", "(B)", "B.", "B)", "B: …"; or "answer is B", "option (B)".
    2. Otherwise the one choice whose full text appears in the prediction (case-insensitive, on word
       boundaries); when several do, the longest wins only if it contains the others
       ("dog barking loudly" over "dog barking"), else the prediction is ambiguous.
    """
    match = LETTER_ANSWER.match(prediction) or LETTER_PHRASE.search(prediction)
    if match:
        letter = next(g for g in match.groups() if g).upper()
        index = LETTERS.index(letter)
        if index < len(choices):
            return index
    text = _phrase(prediction)
    found = [i for i, c in enumerate(choices) if _phrase(c) and _contains(text, _phrase(c))]
    if len(found) == 1:
        return found[0]
    if found:
        longest = max(found, key=lambda i: len(_phrase(choices[i])))
        if all(_contains(_phrase(choices[longest]), _phrase(choices[i])) for i in found):
            return longest
    return None


def _phrase(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def _contains(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words."""
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def normalise_label(text: str) -> str:
    """Lower case, punctuation to spaces, single spaces: "Happy!" and "happy" are one label."""
    cleaned = "".join(" " if ch in string.punctuation and ch not in "#'" else ch for ch in text.lower())
    return " ".join(cleaned.split())


def match_label(prediction: str, labels: Sequence[str]) -> str | None:
    """The label the prediction states: the whole normalised prediction, else its first line/sentence."""
    normalised = {normalise_label(label): label for label in labels}
    predicted = normalise_label(prediction)
    if predicted in normalised:
        return normalised[predicted]
    first = normalise_label(re.split(r"[\n.]", prediction.strip(), maxsplit=1)[0])
    return normalised.get(first)


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int]:
    """Corpus-level WER (all edits / all reference words) after Whisper's English normaliser."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps) if r.strip()]  # an empty reference has no words to miss
    if not kept:
        return {"wer": 0.0, "words": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
    out = jiwer.process_words([r for r, _ in kept], [h for _, h in kept])
    ref_words = out.hits + out.substitutions + out.deletions
    return {
        "wer": (out.substitutions + out.deletions + out.insertions) / ref_words,
        "words": ref_words,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
    }
