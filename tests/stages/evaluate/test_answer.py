"""generate: the block sits once at the end of the prompt, one prefill covers it, no thinking token comes out."""

import numpy as np
import pytest
import soundfile as sf
import torch

from stages.evaluate.answer import answer, load_run
from stages.train.batch import read_samples
from tests.helpers import cli
from tests.refusals import error_line
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
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)  # a valid header and not one sample
    run = make_run("tiny-qwen2-audio")
    result = cli("generate", "--run", run, "--audio", empty, "--question", "?", expect=2)
    error_line(result, 2, "empty.wav", "the file holds no samples")
    error_line(cli("probe", "--run", run, "--corpus", tmp_path, "--limit", 0, expect=2), 2, "--limit 0")


@pytest.mark.parametrize("backbone", TINY)
def test_merged_inference_model_computes_what_the_unmerged_training_model_does(backbone, extracted_corpus):
    """`for_inference` merges LoRA and the block's token rows into the base weights; the logits over a
    prompt (audio, question, block) must stay those of the adapters as trained."""
    from stages.evaluate.answer import encode_prompts, for_inference
    from stages.train.config import ModelConfig
    from stages.train.model import CoatModel

    torch.manual_seed(0)
    model = CoatModel.build(ModelConfig(backbone=backbone, think_tokens=8), {})
    changed = 0
    with torch.no_grad():  # as after training: LoRA's B is no longer 0 and the token rows have moved
        for param in model.model.parameters():
            if param.requires_grad:
                param.normal_(0, 0.05)
                changed += 1
    assert changed >= 2  # LoRA matrices and the trainable token rows
    samples = read_samples(extracted_corpus, ["mel"], limit=2)
    inputs = encode_prompts(model, [s.wave for s in samples], [s.question for s in samples])
    model.eval()
    with torch.no_grad():
        unmerged = model.model(**inputs).logits
        with model.model.disable_adapter():
            without = model.model(**inputs).logits
    assert (unmerged - without).abs().max() > 1e-2  # the adapters change the answer: merging them matters
    merged_model = for_inference(model)
    with torch.no_grad():
        merged = merged_model.model(**inputs).logits
    assert torch.allclose(merged, unmerged, atol=1e-4, rtol=1e-4), (merged - unmerged).abs().max()
