"""`qwen2.5-omni`: the thinker of Qwen2.5-Omni-7B (audio + vision encoders + Qwen2.5-7B); the talker is not used."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoProcessor,
    AutoTokenizer,
    ProcessorMixin,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    WhisperFeatureExtractor,
)
from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
    Qwen2_5OmniAudioEncoderConfig,
    Qwen2_5OmniTextConfig,
    Qwen2_5OmniVisionEncoderConfig,
)

from stages.train.backbones.base import Backbone, qwen_chat_template
from stages.train.backbones.tiny import TINY_AUDIO, TINY_TEXT, tiny_qwen2_tokenizer

# The real checkpoint's system prompt (its model card asks for it when audio output matters).
SYSTEM = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory "
    "and visual inputs, as well as generating text and speech."
)
MEDIA = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}


class AudioOnlyOmniProcessor(Qwen2_5OmniProcessor):
    """Qwen2.5-Omni's own processor (its text and audio code, placeholder expansion included) without the
    image and video processors, which need torchvision. Used only where torchvision cannot be imported:
    the PyPI torchvision builds do not load beside the CPU torch this project is tested with."""

    def check_argument_for_proper_class(self, argument_name, argument):  # noqa: ANN001
        if argument is None and argument_name in ("image_processor", "video_processor"):
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def save_pretrained(self, save_directory, **kwargs):  # noqa: ANN001
        directory = Path(save_directory)
        self.tokenizer.save_pretrained(directory)
        self.feature_extractor.save_pretrained(directory)
        (directory / "chat_template.jinja").write_text(self.chat_template)
        return [str(directory)]


class Qwen25OmniBackbone(Backbone):
    name = "qwen2.5-omni"
    hub_id = "Qwen/Qwen2.5-Omni-7B"
    model_class = Qwen2_5OmniThinkerForConditionalGeneration
    projector_name = "model.audio_tower.proj"  # the audio encoder's last layer maps to the LM's width

    def load_processor(self, source: str | Path) -> ProcessorMixin:
        try:
            processor = AutoProcessor.from_pretrained(str(source))
            if isinstance(processor, Qwen2_5OmniProcessor):
                return processor
        except (ImportError, AttributeError):  # no usable torchvision: audio and text only
            pass
        chat_template = Path(source, "chat_template.jinja")
        return AudioOnlyOmniProcessor(
            image_processor=None,
            video_processor=None,
            feature_extractor=WhisperFeatureExtractor.from_pretrained(str(source)),
            tokenizer=AutoTokenizer.from_pretrained(str(source)),
            chat_template=chat_template.read_text() if chat_template.is_file() else None,
        )

    def _tiny(self, seed: int) -> tuple[Qwen2_5OmniThinkerForConditionalGeneration, Qwen2_5OmniProcessor]:
        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *MEDIA.values()]
        tokenizer = tiny_qwen2_tokenizer(special, extra_special_tokens=MEDIA)
        processor = AudioOnlyOmniProcessor(
            image_processor=None,
            video_processor=None,
            feature_extractor=WhisperFeatureExtractor(feature_size=128),
            tokenizer=tokenizer,
            chat_template=qwen_chat_template(SYSTEM, "<|audio_bos|><|AUDIO|><|audio_eos|>"),
        )
        ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in MEDIA.items()}
        config = Qwen2_5OmniThinkerConfig(
            audio_config=Qwen2_5OmniAudioEncoderConfig(**TINY_AUDIO, output_dim=TINY_TEXT["hidden_size"]),
            vision_config=Qwen2_5OmniVisionEncoderConfig(
                depth=1,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                out_hidden_size=TINY_TEXT["hidden_size"],
                fullatt_block_indexes=[0],
            ),
            text_config=Qwen2_5OmniTextConfig(
                vocab_size=len(tokenizer),
                max_position_embeddings=4096,
                # multimodal RoPE: sections of the 8 rotary frequency pairs for (time, height, width)
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                **TINY_TEXT,
            ),
            audio_token_index=ids["audio_token"],
            image_token_index=ids["image_token"],
            video_token_index=ids["video_token"],
            audio_start_token_id=ids["audio_bos_token"],
            audio_end_token_id=ids["audio_eos_token"],
            user_token_id=tokenizer.convert_tokens_to_ids("user") or 0,
        )
        config.vision_start_token_id = ids["vision_bos_token"]  # read by the multimodal RoPE; the hub config has it
        return Qwen2_5OmniThinkerForConditionalGeneration(config), processor
