"""The detector: class probabilities from the logits of one batched prefill, explanations on demand.

The prompt is the chat turn (image + fixed question) followed by the forced answer prefix
``Verdict:``; the probability of each class is the softmax of the logits of the class words' first
tokens at the last position (the same as renormalizing the full next-token distribution over those
three tokens). No text is generated on this path. Explanations are greedy generations that continue
``Verdict: <label>\\nReasons:``, so the text always argues for the verdict that was given.

Loading applies an optimization profile (:mod:`detector.profile`) when one is given; every option
that cannot work on this machine (a missing GPU, an unsupported dtype, flash-attention not installed,
a compile or quantization that fails its first forward pass) falls back with a
:class:`~detector.profile.FallbackWarning`, never an exception.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from detector.answer import CLASSES, FAKE_CLASSES, VERDICT_PREFIX, class_token_ids, messages, reasons_prefix
from detector.options import (
    FallbackWarning,
    LoadOptions,
    dtype_name,
    dtype_supported,
    flash_attention_available,
    resolve_device,
    resolve_dtype,
)
from detector.profile import apply_profile

log = logging.getLogger(__name__)

EXPLAIN_POLICIES = ("flagged", "none", "on_demand")


@dataclass(frozen=True)
class Thresholds:
    """``uncertain`` when the top class is below ``uncertain_below``; flagged when
    P(manipulated)+P(synthesized) reaches ``flag_threshold`` or the verdict is uncertain."""

    uncertain_below: float = 0.5
    flag_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("uncertain_below", "flag_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")

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


def _top_class(scores: dict[str, float]) -> str:
    return max(CLASSES, key=lambda c: scores[c])


def _fallback(fallbacks: list[str], msg: str) -> None:
    fallbacks.append(msg)
    log.warning(msg)
    warnings.warn(msg, FallbackWarning, stacklevel=3)


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
        explain_max_tokens: int = 64,
        batch_size: int | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.thresholds = thresholds or Thresholds()
        self.name = name
        self.version = version
        self.profile_id = profile_id
        self.explain_max_tokens = explain_max_tokens
        # The batch size the applied profile measured as fastest (callers batch; this is advice).
        self.batch_size = batch_size
        # What Detector.load actually did: effective options, fallbacks taken, profile applied.
        self.load_report: dict[str, Any] = {}
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
        """Load a local checkpoint directory or a hub id (same code path), plus an optional LoRA adapter.

        ``options.profile`` applies an optimization profile first; then each option that cannot work
        here falls back with a :class:`FallbackWarning` (listed in ``detector.load_report``).
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        started = time.perf_counter()
        opts = options or LoadOptions()
        profile_summary = None
        if opts.profile is not None:
            opts, profile_summary = apply_profile(opts, opts.profile, force=opts.force_profile)
        fallbacks: list[str] = []

        device = resolve_device(opts.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            _fallback(fallbacks, f"device {opts.device!r} is not available here; using cpu")
            device = torch.device("cpu")
        dtype = resolve_dtype(opts.dtype, device)
        if dtype != torch.float32 and not dtype_supported(dtype, device):
            _fallback(fallbacks, f"{dtype_name(dtype)} does not run on {device}; using float32")
            dtype = torch.float32
        attn = opts.attn_implementation
        if attn == "flash_attention_2" and not flash_attention_available(device):
            _fallback(
                fallbacks, f"flash_attention_2 needs a GPU and the flash-attn package ({device}); using sdpa"
            )
            attn = "sdpa"
        threads = opts.num_threads
        if threads:
            cores = os.cpu_count() or 1
            if threads > cores:
                _fallback(fallbacks, f"num_threads={threads} exceeds the {cores} cores here; using {cores}")
                threads = cores
            torch.set_num_threads(threads)

        proc_kwargs = {
            k: v for k, v in (("min_pixels", opts.min_pixels), ("max_pixels", opts.max_pixels)) if v
        }
        processor = AutoProcessor.from_pretrained(str(path), **proc_kwargs)
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                str(path), dtype=dtype, attn_implementation=attn
            )
        except (ValueError, ImportError) as exc:
            if attn == "eager":
                raise
            _fallback(fallbacks, f"attention {attn!r} refused by this model ({exc}); using eager")
            attn = "eager"
            model = AutoModelForImageTextToText.from_pretrained(
                str(path), dtype=dtype, attn_implementation=attn
            )

        merged = False
        if opts.adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, opts.adapter_path)  # type: ignore[assignment]
            if opts.merge_adapter:
                try:
                    model = model.merge_and_unload()  # type: ignore[operator]
                    merged = True
                except (ValueError, RuntimeError, NotImplementedError) as exc:
                    _fallback(fallbacks, f"cannot merge the adapter ({exc}); serving it unmerged")
        model.to(device).eval()  # type: ignore[arg-type]

        quantized = False
        float_model = None
        if opts.quantize_int8:
            if device.type != "cpu":
                _fallback(fallbacks, "dynamic int8 quantization runs on CPU only; not quantized")
            elif dtype != torch.float32:
                _fallback(
                    fallbacks, f"dynamic int8 quantization needs float32 weights, not {dtype_name(dtype)}"
                )
            else:
                try:
                    float_model = model
                    model = torch.ao.quantization.quantize_dynamic(
                        model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False
                    )
                    quantized = True
                except (RuntimeError, AssertionError, NotImplementedError) as exc:
                    _fallback(fallbacks, f"dynamic int8 quantization failed ({exc}); not quantized")

        kwargs.setdefault("profile_id", profile_summary["profile_id"] if profile_summary else "default")
        if profile_summary:
            kwargs.setdefault("batch_size", profile_summary["batch_size"])
        det = cls(model, processor, **kwargs)
        compiled = False
        # quantize_dynamic returned a copy; the float model is kept only until the copy has run once.
        if quantized and not det._smoke_test():
            _fallback(fallbacks, "int8-quantized model failed its first forward pass; not quantized")
            det.model = float_model
            quantized = False
        float_model = None
        if opts.compile:
            eager_forward = det.model.forward
            try:
                det.model.forward = torch.compile(eager_forward, dynamic=True)
                compiled = det._smoke_test()
            except Exception as exc:  # compile backends raise many types; any of them means "don't compile"
                log.debug("compile failed", exc_info=exc)
                compiled = False
            if not compiled:
                det.model.forward = eager_forward
                _fallback(fallbacks, "torch.compile failed on this machine; running eager")

        effective = replace(
            opts,
            device=str(device),
            dtype=dtype_name(dtype),
            attn_implementation=attn,
            compile=compiled,
            quantize_int8=quantized,
            merge_adapter=merged,
            num_threads=threads or torch.get_num_threads(),
        )
        det.load_report = {
            "options": effective,
            "fallbacks": fallbacks,
            "profile": profile_summary,
            "load_s": time.perf_counter() - started,
        }
        log.info(
            "loaded %s on %s as %s (attn %s, int8 %s, compile %s, profile %s) in %.1fs",
            path,
            device,
            dtype_name(dtype),
            attn,
            quantized,
            compiled,
            det.profile_id,
            det.load_report["load_s"],
        )
        return det

    def _smoke_test(self) -> bool:
        """One forward pass on a small blank image: does the model run as configured?"""
        try:
            probs = self.class_probabilities([Image.new("RGB", (64, 64), (127, 127, 127))])
        except Exception as exc:  # noqa: BLE001 - whatever broke, the caller falls back
            log.debug("smoke test failed", exc_info=exc)
            return False
        return bool(torch.isfinite(probs).all())

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

    def detect(
        self, images: list[Image.Image], explain: bool = False, max_new_tokens: int | None = None
    ) -> list[Detection]:
        """Verdicts for a batch; with ``explain`` the flagged ones also get a generated explanation.

        Explanations follow the ``explain`` setting at the caller: ``flagged`` -> ``explain=True``,
        ``none``/``on_demand`` -> ``explain=False`` (the review UI calls :meth:`explain` later).
        """
        probs = self.class_probabilities(images)
        results = []
        for row in probs.tolist():
            scores = dict(zip(CLASSES, row, strict=True))
            label, flagged = self.thresholds.decide(scores)
            results.append(Detection(label=label, scores=scores, flagged=flagged))
        if explain:
            wanted = [i for i, r in enumerate(results) if r.flagged]
            # An uncertain verdict is explained for its most probable class (the label stays uncertain).
            shown = [
                results[i].label if results[i].label in CLASSES else _top_class(results[i].scores)
                for i in wanted
            ]
            texts = self.explain([images[i] for i in wanted], shown, max_new_tokens)
            for i, text in zip(wanted, texts, strict=True):
                r = results[i]
                results[i] = Detection(r.label, r.scores, r.flagged, text)
        return results

    @torch.inference_mode()
    def explain(
        self, images: list[Image.Image], labels: list[str], max_new_tokens: int | None = None
    ) -> list[str]:
        """Greedy, batched, capped generation of the reasons for each image's verdict.

        A label that is not a class (``uncertain``) forces only ``Verdict:``; the model then writes its
        own verdict line and the reasons, and the whole continuation is returned.
        """
        if not images:
            return []
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        cap = self.explain_max_tokens if max_new_tokens is None else max_new_tokens
        suffixes = [reasons_prefix(lbl) if lbl in CLASSES else VERDICT_PREFIX for lbl in labels]
        with self._lock:
            inputs = self._inputs(images, suffixes)
            out = self.model.generate(
                **inputs,
                max_new_tokens=cap,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
