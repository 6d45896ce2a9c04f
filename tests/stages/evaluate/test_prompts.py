"""eval's prompts: the presets as published, a file and flags, the system turn reaching the model, the answer
inside <answer> tags scored, and eval.json recording what was asked."""

import json

import numpy as np
import pytest
import soundfile as sf

import stages.evaluate.run_eval as run_eval_module
from stages.evaluate.benchmarks import EvalItem
from stages.evaluate.metrics import judge
from stages.evaluate.prompts import PRESETS, prompt_format
from store_schema.errors import UserError
from tests.helpers import cli
from tests.refusals import error_line, tree_state


def test_the_r1_aqa_preset_is_the_published_mmau_prompt():
    said = PRESETS["r1-aqa"].render("What is heard?", ["a dog", "rain"])
    assert said == (
        "What is heard? Please choose the answer from the following options: ['a dog', 'rain']. "
        "Output the final answer in <answer> </answer>."
    )
    assert (
        PRESETS["coat"].render("Q?", ["x", "y"])
        == "Q?\nChoose one of the options:\n(A) x\n(B) y\nAnswer with the option's text."
    )


def test_a_file_then_flags_override_the_preset(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text("template: 'Listen. {question} {options}'\nsystem: You are an audio expert.\n")
    from_file = prompt_format("r1-aqa", file=file)
    assert from_file.template == "Listen. {question} {options}" and from_file.system == "You are an audio expert."
    flags = prompt_format("coat", template="{question}", system="Be brief.", file=file)
    assert (flags.template, flags.system) == ("{question}", "Be brief.")
    with pytest.raises(UserError, match=r"\{answer\}"):
        prompt_format(template="{question} {answer}").render("q", ["a"])
    file.write_text("templat: typo\n")
    with pytest.raises(UserError, match="p.yaml"):
        prompt_format(file=file)


def test_the_answer_inside_tags_is_what_is_scored():
    item = EvalItem("1", None, "q", "rain", ["a dog", "rain"])
    assert judge("mmau", item, "I think a dog barks. <answer>rain</answer>")["correct"] is True
    assert judge("mmau", item, "<answer> a dog </answer>")["correct"] is False


def test_eval_puts_the_chosen_prompt_and_system_turn_to_the_model(mmau_manifest, make_run, tmp_path, monkeypatch):
    rows = json.loads(mmau_manifest.read_text())[:2]
    manifest = tmp_path / "mmau.json"
    manifest.write_text(json.dumps(rows))
    for row in rows:
        path = tmp_path / row["audio_id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    asked = []
    real_answer = run_eval_module.answer

    def spy(model, waves, questions, max_new_tokens, **kwargs):
        from stages.evaluate.answer import encode_prompts

        ids = encode_prompts(model, waves, questions, kwargs.get("system"))["input_ids"]
        asked.extend(model.processor.tokenizer.batch_decode(ids))
        return real_answer(model, waves, questions, max_new_tokens, **kwargs)

    systems = []
    real_pick = run_eval_module.pick_choice

    def pick_spy(model, wave, question, choices, system=None):
        systems.append(system)
        return real_pick(model, wave, question, choices, system)

    monkeypatch.setattr(run_eval_module, "answer", spy)
    monkeypatch.setattr(run_eval_module, "pick_choice", pick_spy)
    out = tmp_path / "out"
    cli("eval", "--run", make_run("tiny-qwen2-audio"), "--benchmark", "mmau", "--manifest", manifest,
        "--out", out, "--max-new-tokens", 2, "--no-progress", "--prompt-preset", "r1-aqa", "--scoring", "both",
        "--system-prompt", "You are an audio expert.")  # fmt: skip
    assert len(asked) == 2 and systems == ["You are an audio expert."] * 2
    for row, text in zip(rows, asked):
        assert "You are an audio expert." in text
        assert f"{row['question']} Please choose the answer from the following options: {row['choices']!r}" in text
    recorded = json.loads((out / "eval.json").read_text())["prompt"]
    assert recorded == {"template": PRESETS["r1-aqa"].template, "system": "You are an audio expert."}


def test_a_prompt_for_a_benchmark_without_choices_is_refused(tmp_path, make_run):
    result = cli("eval", "--run", make_run("tiny-qwen2-audio"), "--benchmark", "asr", "--manifest", tmp_path,
                 "--prompt-preset", "r1-aqa", expect=2)  # fmt: skip
    assert "mmau/mmar" in result.output


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_a_finished_evaluation_is_never_replaced_without_overwrite(tmp_path, make_run, synth_corpus):
    run, out = make_run("tiny-qwen2-audio"), tmp_path / "out"
    args = ["eval", "--run", run, "--benchmark", "synth", "--manifest", synth_corpus, "--out", out,
            "--max-new-tokens", 2, "--no-progress"]  # fmt: skip
    cli(*args)
    (out / "notes.txt").write_text("someone's notes beside their evaluation")
    before = tree_state(out)
    error_line(cli(*args, expect=2), 2, out, "--overwrite")
    assert tree_state(out) == before
    cli(*args, "--overwrite", "--scoring", "likelihood")
    assert not (out / "notes.txt").exists() and json.loads((out / "eval.json").read_text())["scoring"] == "likelihood"
