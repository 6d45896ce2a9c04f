"""`coat-pipe export`: a trained run leaves the project as a plain model folder that transformers (and peft)
load on their own, with the same prompt and the same greedy answers as `coat-pipe generate`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stages.evaluate.answer import answer, load_run
from stages.train.bundle import save_bundle
from stages.train.config import ModelConfig
from stages.train.model import CoatModel
from stages.train.targets import TargetSpec
from store_schema.stats import ExpertStats
from tests.helpers import cli, subprocess_env
from tests.refusals import error_line, tree_state
from tests.stages.train.conftest import TINY

QUESTION = "Is the pitch rising or falling?"
CLASSES = {
    "tiny-qwen2-audio": "Qwen2AudioForConditionalGeneration",
    "tiny-af3": "AudioFlamingo3ForConditionalGeneration",
    "tiny-qwen2.5-omni": "Qwen2_5OmniThinkerForConditionalGeneration",
}

# Plain transformers in a fresh process: the backbone's own class and AutoProcessor, nothing of coat-pipe.
# (Qwen2.5-Omni's AutoProcessor needs torchvision, whose PyPI builds do not load beside this CPU torch:
# there the script builds the same processor class without its image and video parts.)
PLAIN = """
import json, sys
import numpy as np, torch, transformers
from transformers import AutoProcessor
folder, wave_file, question, cls = sys.argv[1:5]
try:
    processor = AutoProcessor.from_pretrained(folder)
    if not isinstance(processor, transformers.ProcessorMixin):  # Omni without torchvision: a bare tokenizer
        raise ImportError("no torchvision")
except (ImportError, AttributeError):
    from pathlib import Path
    from transformers import AutoTokenizer, Qwen2_5OmniProcessor, WhisperFeatureExtractor
    class AudioOnly(Qwen2_5OmniProcessor):
        def check_argument_for_proper_class(self, name, argument):
            return None if argument is None else super().check_argument_for_proper_class(name, argument)
    processor = AudioOnly(image_processor=None, video_processor=None,
        feature_extractor=WhisperFeatureExtractor.from_pretrained(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
        chat_template=(Path(folder) / "chat_template.jinja").read_text())
model = getattr(transformers, cls).from_pretrained(folder).eval()
conversation = [{"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": question}]}]
text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
inputs = processor(text=[text], audio=[np.load(wave_file)], sampling_rate=16000, return_tensors="pt")
inputs.pop("num_audio_tokens", None)
with torch.inference_mode():
    out = model.generate(**inputs, max_new_tokens=12)  # greedy, block suppressed, eos: generation_config.json
ours = [m for m in sys.modules if m.split(".")[0] in ("pipeline", "stages", "store_schema", "tests")]
print(json.dumps({"prompt": inputs["input_ids"][0].tolist(), "new": out[0, inputs["input_ids"].shape[1]:].tolist(),
                  "project_modules": ours}))
"""


def _specs() -> dict[str, TargetSpec]:
    stats = {"mean": [0.0] * 3, "std": [1.0] * 3, "count": [1.0] * 3}
    fields = {"expert": "mel", "kind": "spectrum", "dim": 3, "fingerprint": "0" * 16}
    return {"mel": TargetSpec.from_stats(ExpertStats.from_json(fields | {"frames": stats, "clip": stats}))}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """trained_run(backbone, no_think=False): a bundle whose LoRA and block rows moved away from their init
    (so merging them matters), saved as training saves it."""
    made = {}

    def make(backbone: str, no_think: bool = False) -> Path:
        if (backbone, no_think) not in made:
            torch.manual_seed(1)
            model = CoatModel.build(ModelConfig(backbone=backbone, think_tokens=4, no_think=no_think), _specs())
            with torch.no_grad():
                for parameter in model.parameters():
                    if parameter.requires_grad:
                        parameter.add_(0.05 * torch.randn_like(parameter))
            run = tmp_path_factory.mktemp(f"run-{backbone}-{no_think}")
            save_bundle(model, run / "final")
            (run / "config.yaml").write_text(yaml.safe_dump({"steps": 7, "schedule": "joint", "lr": 0.003}))
            made[(backbone, no_think)] = run
        return made[(backbone, no_think)]

    return make


def _wave(tmp_path: Path) -> tuple[np.ndarray, Path]:
    t = np.arange(24000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)).astype(np.float32)
    np.save(tmp_path / "wave.npy", wave)
    return wave, tmp_path / "wave.npy"


def _plain(folder: Path, wave_file: Path, backbone: str) -> dict:
    command = [sys.executable, "-c", PLAIN, str(folder), str(wave_file), QUESTION, CLASSES[backbone]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backbone", TINY)
def test_plain_transformers_prompts_and_answers_as_coat_pipe_generate(backbone, trained_run, tmp_path):
    run = trained_run(backbone)
    out = tmp_path / "export"
    cli("export", "--run", run, "--out", out)
    wave, wave_file = _wave(tmp_path)
    ours = answer(load_run(run), [wave], [QUESTION], max_new_tokens=12)[0]
    plain = _plain(out, wave_file, backbone)
    assert plain["project_modules"] == []
    assert plain["prompt"] == ours.prompt_ids  # the template's generation prompt ends with the block
    assert plain["new"][: len(ours.new_ids)] == ours.new_ids  # the same greedy tokens
    config = json.loads((out / "generation_config.json").read_text())
    think = json.loads((out / "coat_pipe.json").read_text())["think_ids"]
    assert config["suppress_tokens"] == think and len(think) == 6
    # and coat-pipe takes the folder as --run: same answer as the run it came from
    assert answer(load_run(out), [wave], [QUESTION], max_new_tokens=12)[0].new_ids == ours.new_ids


def test_the_exported_template_ends_its_generation_prompt_with_the_block(trained_run, tmp_path):
    """The fast-lane half of the plain-transformers test above (in this process, no generation): the
    export's own processor and chat template give, token for token, the prompt `coat-pipe generate`
    builds, whose last K + 2 tokens are the block; generation_config bans exactly those tokens."""
    from transformers import AutoProcessor

    from stages.evaluate.answer import encode_prompts
    from stages.train.think import thinking_block

    run, out = trained_run("tiny-qwen2-audio"), tmp_path / "export"
    cli("export", "--run", run, "--out", out)
    processor = AutoProcessor.from_pretrained(out)
    conversation = [
        {"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": QUESTION}]}
    ]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n" + thinking_block(4))
    wave, _ = _wave(tmp_path)
    plain = processor(text=[text], audio=[wave], sampling_rate=16000, return_tensors="pt")["input_ids"][0].tolist()
    ours = encode_prompts(load_run(run), [wave], [QUESTION])["input_ids"][0].tolist()
    think = json.loads((out / "coat_pipe.json").read_text())["think_ids"]
    assert plain == ours and plain[-len(think) :] == think and len(think) == 6
    assert json.loads((out / "generation_config.json").read_text())["suppress_tokens"] == think


def test_engines_that_ignore_suppress_tokens_ban_the_block_by_bad_words_or_logit_bias(trained_run, tmp_path):
    """The card's serving recipe: with `suppress_tokens` taken out of the generation config, transformers'
    `bad_words_ids` and a -100 logit bias on the block's ids (an OpenAI-style `logit_bias`) give the same
    greedy tokens as the export's own `suppress_tokens`."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    out = tmp_path / "export"
    cli("export", "--run", trained_run("tiny-qwen2-audio"), "--out", out)
    think = json.loads((out / "coat_pipe.json").read_text())["think_ids"]
    card = (out / "README.md").read_text()
    assert f"think_ids = {think}" in card and "bad_words_ids" in card and "logit_bias" in card
    processor = AutoProcessor.from_pretrained(out)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(out).eval()
    chat = [{"role": "user", "content": [{"type": "audio", "audio": "clip"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    wave, _ = _wave(tmp_path)
    inputs = processor(text=[text], audio=[wave], sampling_rate=16000, return_tensors="pt")
    new = inputs["input_ids"].shape[1]
    with torch.inference_mode():
        first = model.generate(**inputs, max_new_tokens=1)[0, new].item()
        # make the block's tokens the greedy choice wherever the first answer token would be: bans must work
        model.get_output_embeddings().weight[think] = 3 * model.get_output_embeddings().weight[first]
        suppressed = model.generate(**inputs, max_new_tokens=12)
        free = model.generation_config
        free.suppress_tokens = None
        unbanned = model.generate(**inputs, generation_config=free, max_new_tokens=12)
        banned = model.generate(**inputs, generation_config=free, max_new_tokens=12, bad_words_ids=[[t] for t in think])
        biased = model.generate(
            **inputs, generation_config=free, max_new_tokens=12, sequence_bias={(t,): -100.0 for t in think}
        )
    assert unbanned[0, new].item() in think  # without a ban the block's tokens would be generated
    assert suppressed[0, new:].tolist() == banned[0, new:].tolist() == biased[0, new:].tolist()
    assert not set(suppressed[0, new:].tolist()) & set(think)


def test_adapter_only_on_the_base_gives_the_merged_logits(trained_run, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2AudioForConditionalGeneration

    run = trained_run("tiny-qwen2-audio")
    cli("export", "--run", run, "--out", tmp_path / "merged")
    cli("export", "--run", run, "--out", tmp_path / "adapter", "--adapter-only")
    merged = load_run(tmp_path / "merged")
    wave, _ = _wave(tmp_path)
    from stages.evaluate.answer import encode_prompts

    inputs = encode_prompts(merged, [wave], [QUESTION])
    meta = json.loads((tmp_path / "adapter" / "coat_pipe.json").read_text())
    base = Qwen2AudioForConditionalGeneration.from_pretrained(meta["base_model"])
    base.resize_token_embeddings(meta["model"]["think_tokens"] + 2 + base.config.text_config.vocab_size)
    adapted = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.inference_mode():
        expected, got = merged.model(**inputs).logits, adapted(**inputs).logits
    assert torch.allclose(expected, got, atol=1e-4), float((expected - got).abs().max())


def test_a_no_think_run_exports_without_a_block(trained_run, tmp_path):
    cli("export", "--run", trained_run("tiny-af3", no_think=True), "--out", tmp_path / "base")
    template = (tmp_path / "base" / "chat_template.jinja").read_text()
    assert "think" not in template
    assert "suppress_tokens" not in json.loads((tmp_path / "base" / "generation_config.json").read_text())
    assert "coat-baseline" in (tmp_path / "base" / "README.md").read_text()


@pytest.mark.slow
def test_a_real_training_run_exports_with_its_settings_and_eval_figures(extracted_corpus, tmp_path):
    """`coat-pipe train` → `eval` → `export`: the card carries the run's settings and its eval figure, and
    the export answers as the run does."""
    run = tmp_path / "run"
    train = ["train", "--backbone", "tiny-qwen2-audio", "--think-tokens", 4, "--batch-size", 2, "--workers", 0]
    cli(*train, "--corpus", extracted_corpus, "--out", run, "--steps", 3, "--lr", "3e-3")
    cli("eval", "--run", run, "--benchmark", "synth", "--manifest", extracted_corpus, "--no-progress")
    cli("export", "--run", run, "--out", tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    accuracy = json.loads((run / "eval" / "synth" / "metrics.json").read_text())["accuracy"]
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "audio-text-to-text"
    assert header["model-index"][0]["results"][0]["metrics"][0]["value"] == round(accuracy, 4)
    assert "| thinking positions (K) | 4 |" in card and "| steps | 3 |" in card and "| experts | mel, pitch |" in card
    wave, _ = _wave(tmp_path)
    ours = answer(load_run(run), [wave], [QUESTION], max_new_tokens=8)[0]
    assert answer(load_run(tmp_path / "out"), [wave], [QUESTION], max_new_tokens=8)[0].new_ids == ours.new_ids


def test_refusals(trained_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"someone else's")
    before = tree_state(out)
    error_line(cli("export", "--run", trained_run("tiny-af3"), "--out", out, expect=2), 2, out, "is not empty")
    assert tree_state(out) == before
    (tmp_path / "unfinished").mkdir()
    result = cli("export", "--run", tmp_path / "unfinished", "--out", tmp_path / "x", expect=2)
    error_line(result, 2, tmp_path / "unfinished", "no model bundle")


def test_overwrite_replaces_an_old_export_whole(trained_run, tmp_path):
    """An adapter-only export over a full one: none of the old merged weights stays beside the adapter (plain
    transformers would otherwise serve the new adapter on the old weights); a failed export leaves the old."""
    out, run = tmp_path / "export", trained_run("tiny-qwen2-audio")
    cli("export", "--run", run, "--out", out)
    assert list(out.glob("model*.safetensors"))
    cli("export", "--run", run, "--out", out, "--adapter-only", "--overwrite")
    assert not list(out.glob("model*.safetensors")) and (out / "adapter_model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left
    before = tree_state(out)
    (tmp_path / "unfinished").mkdir()
    cli("export", "--run", tmp_path / "unfinished", "--out", out, "--overwrite", expect=2)
    assert tree_state(out) == before


@pytest.mark.slow  # end to end; the fast lane keeps to 2 minutes
def test_bench_generate_runs_two_exports_through_plain_generate(trained_run, tmp_path):
    """A smoke test of `bench generate --exports` (no bound on the ratios: they are figures, not checks)."""
    cli("export", "--run", trained_run("tiny-qwen2-audio"), "--out", tmp_path / "coat")
    cli("export", "--run", trained_run("tiny-qwen2-audio", no_think=True), "--out", tmp_path / "base")
    exports = f"{tmp_path / 'coat'},{tmp_path / 'base'}"
    args = ["--exports", exports, "--seconds", 1, "--max-new-tokens", 3, "--repeats", 1]
    result = cli("bench", "generate", *args)
    assert "decode_ratio" in result.output and "ttft_ratio" in result.output
    error_line(cli("bench", "generate", "--exports", tmp_path / "coat", expect=2), 2, "--exports")
