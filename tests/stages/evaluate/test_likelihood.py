"""Likelihood scoring: the cached one-prefill scores equal a plain forward of prompt + choice on every
backbone, and the gold choice wins when the model is made to prefer it. (That it agrees with generation
where the greedy answer is a choice is tested on a trained run, in test_probe.py.)"""

import json

import pytest
import torch

from stages.evaluate.answer import load_run
from stages.train.batch import read_samples
from stages.train.likelihood import choice_ids, choice_logprobs, pick_choice
from stages.train.prompt import encode_conversations
from tests.stages.train.conftest import TINY

CHOICES = ["rising", "falling", "a flat tone that does not move"]


def _full_forward_logprobs(model, wave, question, choices):
    """Independent: each choice appended to the prompt through the training path, one plain forward each."""
    scores = []
    k = len(model.think.slots) if model.think else 0
    for choice, ids in zip(choices, choice_ids(model, choices)):
        response = choice + model.backbone.end_of_turn
        inputs = encode_conversations(model.backbone, model.processor, k, ["c"], [wave], [question], [response])
        with torch.no_grad():
            logits = model.model(**inputs).logits[0].float()
        n = len(ids)
        logp = torch.log_softmax(logits[-n - 1 : -1], dim=-1)
        scores.append(float(logp.gather(-1, torch.tensor(ids)[:, None]).sum()))
    return scores


@pytest.mark.parametrize("backbone", TINY)
def test_one_prefill_scores_equal_a_plain_forward_per_choice(backbone, make_run, extracted_corpus):
    model = load_run(make_run(backbone))
    sample = read_samples(extracted_corpus, ["mel"], limit=1)[0]
    cached = choice_logprobs(model, sample.wave, sample.question, CHOICES)
    plain = _full_forward_logprobs(model, sample.wave, sample.question, CHOICES)
    assert cached == pytest.approx(plain, abs=2e-3, rel=1e-4)


def test_the_preferred_choice_wins(make_run, extracted_corpus):
    model = load_run(make_run("tiny-qwen2-audio"))
    sample = read_samples(extracted_corpus, ["mel"], limit=1)[0]
    gold = "falling"
    first = choice_ids(model, [gold])[0][0]
    end = model.processor.tokenizer.convert_tokens_to_ids(model.backbone.end_of_turn)
    assert {ids[0] for ids in choice_ids(model, CHOICES)} - {first}  # the choices start differently
    # Every step prefers gold's first token and the end of the turn (which all choices share) over the rest.
    preferred = [first, end]
    out = model.model.get_base_model().get_output_embeddings()
    with torch.no_grad():
        saved = out.weight[preferred].clone()
        out.weight[preferred] = out.weight[preferred] + out.weight.abs().max() * 20
    try:
        picked, scores = pick_choice(model, sample.wave, sample.question, CHOICES)
    finally:
        with torch.no_grad():
            out.weight[preferred] = saved
    assert picked == gold and scores[CHOICES.index(gold)] == max(scores)


@pytest.mark.slow
def test_eval_reports_both_scorings_side_by_side(make_run, synth_corpus, tmp_path):
    from stages.lab.synth import ANSWERS
    from tests.helpers import cli

    run = make_run("tiny-qwen2-audio")
    common = ["eval", "--run", run, "--benchmark", "synth", "--manifest", synth_corpus, "--max-new-tokens", 3]
    cli(*common, "--scoring", "both", "--out", tmp_path / "both", "--no-progress")
    cli(*common, "--scoring", "likelihood", "--out", tmp_path / "likelihood", "--no-progress")
    both = json.loads((tmp_path / "both" / "metrics.json").read_text())
    alone = json.loads((tmp_path / "likelihood" / "metrics.json").read_text())
    assert both["n"] == 18 and "accuracy" in both and set(both["likelihood"]["breakdowns"]["task"]) == set(ANSWERS)
    assert both["likelihood"]["accuracy"] == alone["accuracy"]  # the same choices, however they are asked for
    rows = [json.loads(line) for line in (tmp_path / "both" / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["likelihood_choice"] in ANSWERS[row["groups"]["task"]]
        assert row["likelihood_correct"] == (row["likelihood_choice"] == row["reference"])
    refused = cli("eval", "--run", run, "--benchmark", "asr", "--manifest", synth_corpus, "--scoring", "both", expect=2)
    assert "asr has no answers to choose from" in refused.output
