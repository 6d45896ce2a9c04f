"""The scoring rules: the MMAU/MMAR string match with its edge cases, the choice parser, labels, WER."""

import pytest

from stages.evaluate.scoring import corpus_wer, match_label, parse_choice, string_match

SPEAKER = ["Man", "Woman", "Child", "Robot"]
DOGS = ["Dog barking", "Dog growling", "Cat meowing"]
LETTERS = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("prediction", "answer", "choices", "expected"),
    [
        ("Man", "Man", SPEAKER, True),
        ("The speaker is a man.", "Man", SPEAKER, True),  # extra words are fine if no wrong choice's
        ("MAN!", "Man", SPEAKER, True),  # case and punctuation do not matter
        ("A", "Man", SPEAKER, False),  # a letter-only prediction does not hold the answer's words
        ("(A) Man", "Man", SPEAKER, True),
        ("Man or Woman", "Man", SPEAKER, False),  # naming two options
        ("", "Man", SPEAKER, False),  # empty
        ("...", "Man", SPEAKER, False),  # no word at all
        ("dog", "Dog barking", DOGS, False),  # part of the answer only
        ("A dog is barking", "Dog barking", DOGS, True),  # "dog" is shared with a wrong choice: allowed
        ("dog barking, not growling", "Dog barking", DOGS, False),  # a word only a wrong choice has
        ("B", "B", LETTERS, True),  # letter-only choices
        ("The answer is B", "B", LETTERS, True),
        ("A or B", "B", LETTERS, False),
        ("Man", "Man", [*SPEAKER, "man"], True),  # the answer listed twice is not a wrong choice
    ],
)
def test_string_match_is_the_benchmarks_rule(prediction, answer, choices, expected):
    assert string_match(prediction, answer, choices) is expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("B", 1),
        ("(C) Child", 2),
        ("D. Robot", 3),
        ("The answer is D.", 3),
        ("option (b)", 1),
        ("Woman", 1),
        ("I think it is a woman speaking.", 1),
        ("Man or Woman", None),  # ambiguous
        ("nothing like the options", None),
    ],
)
def test_parse_choice_by_letter_or_text(prediction, expected):
    assert parse_choice(prediction, SPEAKER) == expected


def test_parse_choice_prefers_the_longer_option_that_contains_the_shorter():
    choices = ["dog barking", "dog barking loudly", "cat"]
    assert parse_choice("a dog barking loudly", choices) == 1
    assert parse_choice("dog barking", choices) == 0


def test_match_label_normalises_case_and_punctuation():
    labels = ["happy", "sad", "neutral"]
    assert match_label("Happy!", labels) == "happy"
    assert match_label("sad. The speaker sounds low.", labels) == "sad"
    assert match_label("cheerful", labels) is None


def test_corpus_wer_counts_all_edits_over_all_reference_words():
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sat on mat", "hello there world"]
    result = corpus_wer(refs, hyps)
    assert result["words"] == 8 and result["deletions"] == 1 and result["insertions"] == 1
    assert result["wer"] == pytest.approx(2 / 8)  # corpus-level: not the mean of 1/6 and 1/2


def test_corpus_wer_applies_the_whisper_english_normaliser():
    assert corpus_wer(["Hello, World!"], ["hello world"])["wer"] == 0.0
    assert corpus_wer(["colour"], ["color"])["wer"] == 0.0  # British spellings are mapped
    assert corpus_wer(["two words"], [""])["wer"] == 1.0  # an unanswered item: every word deleted
