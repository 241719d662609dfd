"""Build a complete Qwen2.5-VL checkpoint with random weights, without a model hub.

The files are the ones a real checkpoint has (config, safetensors, tokenizer with the Qwen special
tokens and the Qwen2.5-VL chat template, image and video processor), so the detector loads this
path and ``Qwen/Qwen2.5-VL-3B-Instruct`` through one code path. ``real_size=True`` keeps the real 3B
configuration (random weights): it runs at the real model's speed, for benchmarks.
Same seed, same files.
"""

from __future__ import annotations

import json
from pathlib import Path

from detector.answer import CLASSES, QUESTION, format_answer

# The special tokens of Qwen2.5-VL, in their real order (ids follow the regular vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL-Instruct's chat template (as shipped with the real checkpoint).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small pixel bounds keep the tiny model fast on a CPU: 56x56 .. 112x112 (4..16 visual tokens).
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 112 * 112
REAL_MIN_PIXELS = 256 * 28 * 28
REAL_MAX_PIXELS = 1280 * 28 * 28


def _corpus() -> list[str]:
    words = [
        QUESTION,
        "You are a helpful assistant.",
        "system user assistant",
        *(format_answer(c) for c in CLASSES),
        "The lighting, shadows, edges, texture, noise, compression and reflections look consistent.",
        "Splicing, copy-move, inpainting, warping, diffusion, GAN artifacts, repeated patterns.",
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;!?'\"()-_/",
    ]
    return words * 4


def build_tokenizer(vocab_size: int = 1024):  # type: ignore[no-untyped-def]
    """A byte-level BPE trained on a small corpus, wrapped as the real Qwen2 tokenizer class."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    model_state = json.loads(raw.to_str())["model"]
    vocab: dict[str, int] = model_state["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # the tokenizers BPE takes (left, right) pairs
        unk_token=None,  # type: ignore[arg-type]  # byte-level BPE has no unknown token
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(tokenizer, real_size: bool = False):  # type: ignore[no-untyped-def]
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = len(tokenizer)
    if real_size:
        # Qwen2.5-VL-3B-Instruct's published configuration (vocab kept to this tokenizer's size).
        text = dict(
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            max_position_embeddings=128000,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        )
        vision = dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=2048,
            fullatt_block_indexes=[7, 15, 23, 31],
            window_size=112,
        )
    else:
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # head_dim 16 -> mrope sections must sum to 8
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        )
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            fullatt_block_indexes=[1],
            window_size=56,
        )
    text.update(
        vocab_size=vocab,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        rms_norm_eps=1e-6,
        hidden_act="silu",
    )
    vision.update(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=not real_size,
    )


def build_tiny_checkpoint(path: str | Path, seed: int = 0, real_size: bool = False) -> Path:
    """Write a loadable random-weight Qwen2.5-VL checkpoint to ``path`` and return it."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from detector.processor import build_processor, save_processor

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, real_size=real_size)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    lo, hi = (REAL_MIN_PIXELS, REAL_MAX_PIXELS) if real_size else (TINY_MIN_PIXELS, TINY_MAX_PIXELS)
    processor = build_processor(tokenizer, CHAT_TEMPLATE, lo, hi)
    model.save_pretrained(out, safe_serialization=True)
    save_processor(processor, out)
    return out
