"""The detector: class probabilities from the logits of one batched prefill, explanations on demand.

The prompt is the chat turn (image + fixed question) followed by the forced answer prefix
``Verdict:``; the probability of each class is the softmax of the logits of the class words' first
tokens at the last position (the same as renormalizing the full next-token distribution over those
three tokens). No text is generated on this path. Explanations are greedy generations that continue
``Verdict: <label>\\nReasons:``, so the text always argues for the verdict that was given.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from detector.answer import CLASSES, FAKE_CLASSES, VERDICT_PREFIX, class_token_ids, messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """``uncertain`` when the top class is below ``uncertain_below``; flagged when
    P(manipulated)+P(synthesized) reaches ``flag_threshold`` or the verdict is uncertain."""

    uncertain_below: float = 0.5
    flag_threshold: float = 0.5

    def decide(self, scores: dict[str, float]) -> tuple[str, bool]:
        top = max(CLASSES, key=lambda c: scores[c])
        label = top if scores[top] >= self.uncertain_below else "uncertain"
        fake = sum(scores[c] for c in FAKE_CLASSES)
        return label, label == "uncertain" or fake >= self.flag_threshold


@dataclass(frozen=True)
class Detection:
    label: str
    scores: dict[str, float]
    flagged: bool
    explanation: str = ""


@dataclass
class LoadOptions:
    """How to load and run the model; an optimization profile fills these in."""

    device: str = "auto"
    dtype: str = "auto"  # auto, float32, bfloat16, float16
    attn_implementation: str = "sdpa"
    adapter_path: str | None = None
    merge_adapter: bool = False
    compile: bool = False
    quantize_int8: bool = False
    num_threads: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class Detector:
    """Qwen2.5-VL asked one fixed question; thread-safe for one caller at a time (a lock guards it)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        thresholds: Thresholds | None = None,
        name: str = "misinfo-detector",
        version: str = "0",
        profile_id: str = "default",
    ) -> None:
        self.model = model
        self.processor = processor
        self.thresholds = thresholds or Thresholds()
        self.name = name
        self.version = version
        self.profile_id = profile_id
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # the last position is then the prompt's end in every row
        self.class_ids = class_token_ids(self.tokenizer)
        self._class_index = torch.tensor([self.class_ids[c] for c in CLASSES])
        self._prompt = processor.apply_chat_template(messages(), add_generation_prompt=True, tokenize=False)
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(
        cls,
        path: str | Path,
        options: LoadOptions | None = None,
        **kwargs: Any,
    ) -> Detector:
        """Load a local checkpoint directory or a hub id (same code path), plus an optional LoRA adapter."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        opts = options or LoadOptions()
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        device = resolve_device(opts.device)
        dtype = resolve_dtype(opts.dtype, device)
        proc_kwargs = {k: v for k, v in (("min_pixels", opts.min_pixels), ("max_pixels", opts.max_pixels)) if v}
        started = time.perf_counter()
        processor = AutoProcessor.from_pretrained(str(path), **proc_kwargs)
        model = AutoModelForImageTextToText.from_pretrained(
            str(path), dtype=dtype, attn_implementation=opts.attn_implementation
        )
        if opts.adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, opts.adapter_path)
            if opts.merge_adapter:
                model = model.merge_and_unload()
        model.to(device).eval()
        if opts.quantize_int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        if opts.compile:
            model.forward = torch.compile(model.forward, dynamic=True)
        log.info("loaded %s on %s as %s in %.1fs", path, device, dtype, time.perf_counter() - started)
        return cls(model, processor, **kwargs)

    def _inputs(self, images: list[Image.Image], suffixes: list[str]) -> Any:
        texts = [self._prompt + s for s in suffixes]
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        batch = self.processor(text=texts, images=rgb, padding=True, return_tensors="pt")
        return batch.to(self.device)

    @torch.inference_mode()
    def class_probabilities(self, images: list[Image.Image]) -> torch.Tensor:
        """P(class) for each image, shape (batch, len(CLASSES)), from one forward pass over the batch."""
        if not images:
            return torch.empty(0, len(CLASSES))
        with self._lock:
            inputs = self._inputs(images, [VERDICT_PREFIX] * len(images))
            out = self.model(**inputs, logits_to_keep=1, use_cache=False)
            last = out.logits[:, -1, :].float()
            class_logits = last.index_select(-1, self._class_index.to(last.device))
            return torch.softmax(class_logits, dim=-1).cpu()

    def detect(self, images: list[Image.Image], explain: bool = False) -> list[Detection]:
        """Verdicts for a batch; with ``explain`` the flagged ones also get a generated explanation."""
        probs = self.class_probabilities(images)
        results = []
        for row in probs.tolist():
            scores = dict(zip(CLASSES, row, strict=True))
            label, flagged = self.thresholds.decide(scores)
            results.append(Detection(label=label, scores=scores, flagged=flagged))
        if explain:
            wanted = [i for i, r in enumerate(results) if r.flagged]
            texts = self.explain([images[i] for i in wanted], [results[i].label for i in wanted])
            for i, text in zip(wanted, texts, strict=True):
                r = results[i]
                results[i] = Detection(r.label, r.scores, r.flagged, text)
        return results

    @torch.inference_mode()
    def explain(self, images: list[Image.Image], labels: list[str], max_new_tokens: int = 64) -> list[str]:
        """Greedy, batched, capped generation of the reasons for each image's verdict."""
        if not images:
            return []
        shown = [lbl if lbl in CLASSES else "uncertain" for lbl in labels]
        suffixes = [f"{VERDICT_PREFIX} {lbl}\nReasons:" for lbl in shown]
        with self._lock:
            inputs = self._inputs(images, suffixes)
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
