"""generate: the block sits once at the end of the prompt, one prefill covers it, no thinking token comes out."""

import pytest
import torch

from stages.evaluate.answer import answer, load_run
from stages.train.batch import read_samples
from tests.conftest import cli
from tests.stages.train.conftest import TINY


@pytest.mark.parametrize("backbone", TINY)
def test_block_prefilled_once_then_kv_cache_and_never_generated(backbone, make_run, extracted_corpus):
    model = load_run(make_run(backbone))
    think = model.think.all
    samples = read_samples(extracted_corpus, ["mel"], limit=2)  # two lengths: the batch is left-padded
    lm = model.backbone.language_model(model.model.get_base_model())
    lengths = []
    hook = lm.register_forward_pre_hook(
        lambda _m, args, kwargs: lengths.append(
            (kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]).shape[1]
        ),
        with_kwargs=True,
    )
    # make thinking tokens the most likely output, so only the ban keeps them out of the answer
    out_embed = model.model.get_base_model().get_output_embeddings()
    with torch.no_grad():
        saved = out_embed.weight[think].clone()
        out_embed.weight[think] = out_embed.weight[think] * 50 + out_embed.weight.abs().max() * 5
    try:
        said = answer(model, [s.wave for s in samples], [s.question for s in samples], max_new_tokens=5)
    finally:
        hook.remove()
        with torch.no_grad():
            out_embed.weight[think] = saved

    for row in said:
        assert [row.prompt_ids.count(t) for t in think] == [1] * len(think)
        assert row.prompt_ids[-len(think) :] == think  # the block closes the prompt
        assert not set(row.new_ids) & set(think)
        assert "<|think" not in row.text
    padded = max(len(row.prompt_ids) for row in said)
    assert lengths[0] == padded  # one prefill over audio, question and block
    assert lengths[1:] and all(n == 1 for n in lengths[1:])  # then one token at a time on the cache


def test_generate_cli_answers_and_reads_out_the_block(make_run, speech_dir, tmp_path):
    wav = next(speech_dir.glob("en/*.wav"))
    png = tmp_path / "readout.png"
    result = cli(
        "generate",
        "--run",
        make_run("tiny-qwen2-audio"),
        "--audio",
        wav,
        "--question",
        "What is said?",
        "--max-new-tokens",
        4,
        "--readout",
        "--png",
        png,
    )
    assert "pitch: clip mean" in result.output and "mel: mean absolute slot error" in result.output
    assert png.stat().st_size > 10_000


def test_generate_refuses_missing_audio_and_baseline_readout(make_run, tmp_path, speech_dir):
    result = cli(
        "generate", "--run", make_run("tiny-qwen2-audio"), "--audio", tmp_path / "nope.wav", "--question", "?", expect=2
    )
    assert "nope.wav: no such file" in result.output
    wav = next(speech_dir.glob("en/*.wav"))
    result = cli(
        "generate",
        "--run",
        make_run("tiny-qwen2-audio", no_think=True),
        "--audio",
        wav,
        "--question",
        "?",
        "--max-new-tokens",
        2,
        "--readout",
        expect=2,
    )
    assert "--no-think" in result.output
    result = cli("generate", "--run", tmp_path, "--audio", wav, "--question", "?", expect=2)
    assert "no model bundle" in result.output
