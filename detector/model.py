"""The detector: class probabilities from the logits of one batched prefill, explanations on demand.

The prompt is the chat turn (image + fixed question) followed by the forced answer prefix
``Verdict:``; the probability of each class is the softmax of the logits of the class words' first
tokens at the last position (the same as renormalizing the full next-token distribution over those
three tokens). No text is generated on this path. Explanations are greedy generations that continue
``Verdict: <label>\\nReasons:``, so the text always argues for the verdict that was given.

Detection is split in two so a caller can overlap them: :meth:`Detector.prepare` (resize to the
verdict resolution, run the processor: CPU work, thread-safe, no model lock) and
:meth:`Detector.score` (the forward pass under the model lock). ``detect`` is ``score(prepare(...))``.

Loading applies an optimization profile (:mod:`detector.profile`) when one is given; every option
that cannot work on this machine (a missing GPU, an unsupported dtype, flash-attention not installed,
a compile or quantization that fails its first forward pass) falls back with a
:class:`~detector.profile.FallbackWarning`, never an exception.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
from detector.resolution import Resolution, encode, for_processor, resize_for_verdict

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


@dataclass
class Prepared:
    """A batch made ready for the model by :meth:`Detector.prepare` (no model state touched).

    ``parts`` holds (row indices, processor outputs): one part for a uniform batch, one per image
    grid when the resolution keeps aspect ratios. ``images`` are the images as resized, kept for
    explanations.
    """

    parts: list[tuple[list[int], Any]]
    images: list[Image.Image] = field(repr=False)
    prepare_s: float = 0.0

    def __len__(self) -> int:
        return len(self.images)


def _top_class(scores: dict[str, float]) -> str:
    return max(CLASSES, key=lambda c: scores[c])


def _fallback(fallbacks: list[str], msg: str) -> None:
    fallbacks.append(msg)
    log.warning(msg)
    warnings.warn(msg, FallbackWarning, stacklevel=3)


class Detector:
    """Qwen2.5-VL asked one fixed question.

    :meth:`prepare` may run on many threads at once (each thread gets its own copy of the processor:
    fast tokenizers refuse concurrent use); the model itself runs one caller at a time (a lock).
    """

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
        resolution: Resolution | None = None,
        preprocess_on_device: bool = False,
        temperature: float = 1.0,
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
        # The verdict resolution, capped to what this checkpoint's processor admits.
        self.resolution = for_processor(resolution or Resolution(), processor)
        # Run the processor's torchvision backend on the model's device (set by load when it can).
        self.preprocess_on_device = preprocess_on_device
        # Class logits are divided by it before the softmax (detector.calibration; 1 = uncalibrated).
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        # What Detector.load actually did: effective options, fallbacks taken, profile applied.
        self.load_report: dict[str, Any] = {}
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # the last position is then the prompt's end in every row
        self.class_ids = class_token_ids(self.tokenizer)
        self._class_index = torch.tensor([self.class_ids[c] for c in CLASSES])
        self._prompt = processor.apply_chat_template(messages(), add_generation_prompt=True, tokenize=False)
        self._lock = threading.Lock()
        # A pristine copy, never used to encode, is what each preparing thread copies its own from.
        self._processor_template = copy.deepcopy(processor)
        self._copy_lock = threading.Lock()
        self._local = threading.local()

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
        here falls back with a :class:`FallbackWarning` (listed in ``detector.load_report``). Compiled
        blocks are warmed up before this returns, so the first real batch runs at full speed.
        """
        from transformers import AutoModelForImageTextToText

        from detector.processor import load_processor

        started = time.perf_counter()
        opts = options or LoadOptions()
        profile_summary = None
        if opts.profile is not None:
            opts, profile_summary = apply_profile(opts, opts.profile, force=opts.force_profile)
        fallbacks: list[str] = []
        resolution = Resolution(opts.verdict_side, opts.keep_aspect)  # an invalid side fails before loading

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

        processor = load_processor(path, opts.min_pixels, opts.max_pixels)
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

        calibration = _calibration(opts, path, fallbacks)
        kwargs.setdefault("temperature", calibration["temperature"])
        kwargs.setdefault("profile_id", profile_summary["profile_id"] if profile_summary else "default")
        if profile_summary:
            kwargs.setdefault("batch_size", profile_summary["batch_size"])
        det = cls(model, processor, resolution=resolution, **kwargs)
        # quantize_dynamic returned a copy; the float model is kept only until the copy has run once.
        if quantized and not det._smoke_test():
            _fallback(fallbacks, "int8-quantized model failed its first forward pass; not quantized")
            det.model = float_model
            quantized = False
        float_model = None
        tuned = det._tune(opts, fallbacks)

        effective = replace(
            opts,
            device=str(device),
            dtype=dtype_name(dtype),
            attn_implementation=attn,
            compile=tuned["compile"],
            compile_blocks=tuned["compile_blocks"],
            vision_attention=tuned["vision_attention"],
            quantize_int8=quantized,
            merge_adapter=merged,
            num_threads=threads or torch.get_num_threads(),
            verdict_side=det.resolution.side,
            preprocess_on_device=det.preprocess_on_device,
        )
        det.load_report = {
            "options": effective,
            "fallbacks": fallbacks,
            "profile": profile_summary,
            "vision_attention": tuned["vision_attention"],
            "compile_blocks": tuned["compile_blocks"],
            "resolution": {"side": det.resolution.side, "keep_aspect": det.resolution.keep_aspect},
            "calibration": {**calibration, "temperature": det.temperature},
            "warmup_s": tuned["warmup_s"],
            "load_s": time.perf_counter() - started,
        }
        log.info(
            "loaded %s on %s as %s (attn %s, vision attention %s, int8 %s, compile %s, compiled blocks %s, "
            "verdict side %d, profile %s) in %.1fs",
            path,
            device,
            dtype_name(dtype),
            attn,
            tuned["vision_attention"],
            quantized,
            tuned["compile"],
            tuned["compile_blocks"],
            det.resolution.side,
            det.profile_id,
            det.load_report["load_s"],
        )
        return det

    @classmethod
    def from_model(
        cls, model: Any, processor: Any, options: LoadOptions | None = None, **kwargs: Any
    ) -> Detector:
        """Wrap a model already built and placed (the real-size benchmark builds one in memory) and
        apply what :meth:`load` applies after loading: vision attention, compile, warm-up, resolution.
        Device, dtype, adapter, quantization and profile options are not applied here."""
        opts = options or LoadOptions()
        fallbacks: list[str] = []
        if opts.temperature is not None:
            kwargs.setdefault("temperature", opts.temperature)
        det = cls(model, processor, resolution=Resolution(opts.verdict_side, opts.keep_aspect), **kwargs)
        tuned = det._tune(opts, fallbacks)
        det.load_report = {
            "options": replace(
                opts,
                device=str(det.device),
                dtype=dtype_name(next(model.parameters()).dtype),
                compile=tuned["compile"],
                compile_blocks=tuned["compile_blocks"],
                vision_attention=tuned["vision_attention"],
                verdict_side=det.resolution.side,
                preprocess_on_device=det.preprocess_on_device,
            ),
            "fallbacks": fallbacks,
            "profile": None,
            "vision_attention": tuned["vision_attention"],
            "compile_blocks": tuned["compile_blocks"],
            "resolution": {"side": det.resolution.side, "keep_aspect": det.resolution.keep_aspect},
            "calibration": {
                "temperature": det.temperature,
                "source": "option" if opts.temperature is not None else "none",
            },
            "warmup_s": tuned["warmup_s"],
        }
        return det

    def _tune(self, opts: LoadOptions, fallbacks: list[str]) -> dict[str, Any]:
        """Vision attention, compile (whole forward or blocks), preprocessing device, then warm-up:
        each falls back with a warning when it fails here."""
        from detector import compile_blocks as blocks
        from detector import vision_attention as va

        device = self.device
        dtype = next(self.model.parameters()).dtype
        kind = "stock"
        if va.vision_tower(self.model) is not None:
            kind, why = va.resolve(opts.vision_attention, device, dtype)
            if why:
                _fallback(fallbacks, why)
            if kind != "stock":
                va.set_vision_attention(self.model, kind)
                if not self._smoke_test():
                    va.set_vision_attention(self.model, "stock")
                    _fallback(
                        fallbacks, f"{kind} vision attention failed its first forward pass; using stock"
                    )
                    kind = "stock"

        if opts.preprocess_on_device:
            why = _preprocess_on_device_unavailable(self.processor, device)
            if why:
                _fallback(fallbacks, why)
            else:
                self.preprocess_on_device = True

        compiled = False
        want_blocks = opts.compile_blocks if opts.compile_blocks is not None else device.type == "cuda"
        backend = str(opts.extra.get("compile_backend", "inductor"))
        warmup_s = None
        if opts.compile:
            eager_forward = self.model.forward
            try:
                self.model.forward = torch.compile(eager_forward, dynamic=True, backend=backend)
                compiled = self._smoke_test()
            except Exception as exc:  # compile backends raise many types; any of them means "don't compile"
                log.debug("compile failed", exc_info=exc)
                compiled = False
            if not compiled:
                self.model.forward = eager_forward
                _fallback(fallbacks, "torch.compile failed on this machine; running eager")
            want_blocks = False  # the whole forward is compiled (or refused): blocks add nothing
        compiled_blocks = False
        if want_blocks:
            modules = blocks.block_modules(self.model)
            started = time.perf_counter()
            try:
                blocks.compile_blocks(self.model, backend=backend)
                compiled_blocks = bool(modules) and self._warm_up()
            except Exception as exc:  # compile backends raise many types; any of them means "don't compile"
                log.debug("compiling blocks failed", exc_info=exc)
            warmup_s = time.perf_counter() - started
            if not compiled_blocks:
                blocks.uncompile(modules)
                why = "no vision blocks or decoder layers found" if not modules else "it failed to run"
                _fallback(fallbacks, f"compiling the model's blocks did not work here ({why}); running eager")
        return {
            "vision_attention": kind,
            "compile": compiled,
            "compile_blocks": compiled_blocks,
            "warmup_s": warmup_s,
        }

    def _warm_up(self) -> bool:
        """Batches of 2 then 1 at the verdict resolution: compiled blocks get their dynamic-batch graph
        and the batch-1 one (a size of 1 is specialized) before the first real batch."""
        side = self.resolution.side or 112
        blank = Image.new("RGB", (side, side), (127, 127, 127))
        return self._smoke_test([blank, blank]) and self._smoke_test([blank])

    def _smoke_test(self, images: list[Image.Image] | None = None) -> bool:
        """One forward pass on a small blank image: does the model run as configured?"""
        try:
            probs = self.class_probabilities(images or [Image.new("RGB", (64, 64), (127, 127, 127))])
        except Exception as exc:  # noqa: BLE001 - whatever broke, the caller falls back
            log.debug("smoke test failed", exc_info=exc)
            return False
        return bool(torch.isfinite(probs).all())

    # --- prepare: CPU work, thread-safe, no model lock -------------------------------------------

    def _thread_processor(self) -> Any:
        proc = getattr(self._local, "processor", None)
        if proc is None:
            with self._copy_lock:
                proc = copy.deepcopy(self._processor_template)
            proc.tokenizer.padding_side = "left"
            self._local.processor = proc
        return proc

    def _encode(self, images: list[Image.Image], suffixes: list[str]) -> Any:
        """The processor's outputs for images at the verdict resolution (this thread's processor)."""
        kwargs: dict[str, Any] = {"device": self.device} if self.preprocess_on_device else {}
        texts = [self._prompt + s for s in suffixes]
        return encode(self._thread_processor(), images, texts, self.resolution, **kwargs)

    def prepare(self, images: Sequence[Image.Image], suffixes: Sequence[str] | None = None) -> Prepared:
        """Resize to the verdict resolution and run the processor; no model lock is taken.

        Safe to call from several threads at once, and while :meth:`score` runs another batch.
        ``suffixes`` (default: ``Verdict:`` for every image) follow the chat prompt.
        """
        started = time.perf_counter()
        resized = [resize_for_verdict(im, self.resolution) for im in images]
        ends = list(suffixes) if suffixes is not None else [VERDICT_PREFIX] * len(resized)
        if len(ends) != len(resized):
            raise ValueError(f"{len(resized)} images but {len(ends)} suffixes")
        if not resized:
            return Prepared([], [])
        if self.resolution.keep_aspect:
            groups: dict[tuple[int, int], list[int]] = {}
            for i, im in enumerate(resized):
                groups.setdefault(im.size, []).append(i)
            rows = list(groups.values())
        else:
            rows = [list(range(len(resized)))]
        parts = []
        for idx in rows:
            enc = self._encode([resized[i] for i in idx], [ends[i] for i in idx])
            if self.device.type == "cuda" and not self.preprocess_on_device:
                # Pinned host memory: score's copy to the GPU is then asynchronous.
                enc = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in enc.items()}
            parts.append((idx, enc))
        return Prepared(parts, resized, time.perf_counter() - started)

    # --- score: the model, one caller at a time ---------------------------------------------------

    def _to_device(self, enc: Any) -> dict[str, Any]:
        device = self.device
        return {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in enc.items()
        }

    @torch.inference_mode()
    def probabilities(self, prepared: Prepared) -> torch.Tensor:
        """P(class) for each prepared image, shape (batch, len(CLASSES)): one forward pass per part."""
        out = torch.empty(len(prepared), len(CLASSES))
        with self._lock:
            for idx, enc in prepared.parts:
                logits = self.model(**self._to_device(enc), logits_to_keep=1, use_cache=False).logits
                last = logits[:, -1, :].float()
                class_logits = last.index_select(-1, self._class_index.to(last.device))
                if self.temperature != 1.0:
                    class_logits = class_logits / self.temperature
                out[idx] = torch.softmax(class_logits, dim=-1).cpu()
        return out

    def class_probabilities(self, images: list[Image.Image]) -> torch.Tensor:
        """P(class) for each image, shape (batch, len(CLASSES)), from one forward pass over the batch."""
        if not images:
            return torch.empty(0, len(CLASSES))
        return self.probabilities(self.prepare(images))

    def score(
        self, prepared: Prepared, explain: bool = False, max_new_tokens: int | None = None
    ) -> list[Detection]:
        """Verdicts for a prepared batch; with ``explain`` the flagged ones also get an explanation."""
        probs = self.probabilities(prepared) if len(prepared) else torch.empty(0, len(CLASSES))
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
            texts = self.explain([prepared.images[i] for i in wanted], shown, max_new_tokens)
            for i, text in zip(wanted, texts, strict=True):
                r = results[i]
                results[i] = Detection(r.label, r.scores, r.flagged, text)
        return results

    def detect(
        self, images: list[Image.Image], explain: bool = False, max_new_tokens: int | None = None
    ) -> list[Detection]:
        """Verdicts for a batch: ``score(prepare(images))``; with ``explain`` the flagged ones also get
        a generated explanation.

        Explanations follow the ``explain`` setting at the caller: ``flagged`` -> ``explain=True``,
        ``none``/``on_demand`` -> ``explain=False`` (the review UI calls :meth:`explain` later).
        """
        return self.score(self.prepare(images), explain=explain, max_new_tokens=max_new_tokens)

    def _inputs(self, images: list[Image.Image], suffixes: list[str]) -> Any:
        """One batch's model inputs on the model's device (images resized by the verdict policy)."""
        resized = [resize_for_verdict(im, self.resolution) for im in images]
        return self._to_device(self._encode(resized, suffixes))

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
        inputs = self._inputs(images, suffixes)  # one part: generation pads rows of any grid together
        with self._lock:
            out = self.model.generate(
                **inputs,
                max_new_tokens=cap,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _calibration(opts: LoadOptions, path: str | Path, fallbacks: list[str]) -> dict[str, Any]:
    """The temperature to serve with and where it came from: the option, else the calibration file
    stored with the loaded weights (the adapter's when there is one: a temperature fitted without the
    adapter does not hold with it), else 1."""
    from detector.calibration import CalibrationError, read_calibration

    if opts.temperature is not None:
        if not opts.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {opts.temperature}")
        return {"temperature": float(opts.temperature), "source": "option"}
    directory = opts.adapter_path or (str(path) if Path(str(path)).is_dir() else None)
    try:
        cal = read_calibration(directory)
    except CalibrationError as exc:
        _fallback(fallbacks, f"{exc}; serving T=1")
        cal = None
    if cal is None:
        return {"temperature": 1.0, "source": "none"}
    return {"temperature": cal.temperature, "source": f"{directory}/calibration.json"}


def _preprocess_on_device_unavailable(processor: Any, device: torch.device) -> str | None:
    """Why the processor cannot run on ``device``, or None when it can (torchvision backend, a GPU)."""
    if device.type != "cuda":
        return f"preprocessing on the model's device needs a GPU ({device}); preprocessing on the CPU"
    try:
        from transformers.image_processing_backends import TorchvisionBackend
    except ImportError:
        return "this transformers has no torchvision image-processor backend; preprocessing on the CPU"
    if not isinstance(getattr(processor, "image_processor", None), TorchvisionBackend):
        return "the image processor is not the torchvision one (is torchvision installed?); preprocessing on the CPU"
    return None
