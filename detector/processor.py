"""The Qwen2.5-VL processor, with or without torchvision.

Transformers 5 builds Qwen2.5-VL's processor from a torchvision image processor and a video
processor, and both need torchvision. A machine with only torch, transformers, pillow and numpy (a
plain GPU box running the benchmark from a checkout) has neither, so there the processor is put
together from the PIL image processor and the tokenizer, without video support: the detector never
passes videos. Same pixels up to float rounding, same tokens.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, Qwen2_5_VLProcessor

log = logging.getLogger(__name__)


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


class ImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without a video processor (which needs torchvision)."""

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)


def save_processor(processor: Any, out: str | Path) -> None:
    """Write the processor's files; an image-only one writes its image processor and tokenizer
    (transformers' processor writer expects the video processor)."""
    if isinstance(processor, ImageOnlyProcessor):
        processor.image_processor.save_pretrained(str(out))
        processor.tokenizer.save_pretrained(str(out))
    else:
        processor.save_pretrained(str(out))


def _image_processor_kwargs(min_pixels: int | None, max_pixels: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}


def build_processor(tokenizer: Any, chat_template: str, min_pixels: int, max_pixels: int) -> Any:
    """A new processor around ``tokenizer`` (tiny checkpoints, the real-size benchmark)."""
    kw = dict(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    if torchvision_available():
        from transformers import Qwen2VLImageProcessor
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**kw),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2, temporal_patch_size=2),
            chat_template=chat_template,
        )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return ImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil(**kw),
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=chat_template,
    )


def load_processor(path: str | Path, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """The checkpoint's processor (``AutoProcessor``), or, without torchvision, its PIL equivalent."""
    kw = _image_processor_kwargs(min_pixels, max_pixels)
    if torchvision_available():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(path), **kw)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    log.info("torchvision is not installed: the PIL image processor prepares images (no videos)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return ImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(str(path), **kw),
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=tokenizer.chat_template,
    )
