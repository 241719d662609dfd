"""Training records in the seed project's conversation JSON, the torch dataset and the collator.

A record (one element of the JSON list)::

    {"id": "...", "image": "images/ab12.png",
     "conversations": [{"from": "human", "value": "<image>\\nIs this image manipulated or synthesized?"},
                       {"from": "gpt", "value": "Verdict: manipulated\\nReasons: ..."}]}

``role``/``content`` keys are read as well. The question is always asked in the detector's chat form
(:func:`detector.answer.messages`), so training and inference see the same prompt; the loss covers
the answer tokens (and the closing ``<|im_end|>``) only.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from detector.answer import QUESTION, format_answer, messages, parse_label
from detector.resolution import Resolution, encode, for_processor
from trainer.augment import Reshare

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    image: Path
    answer: str
    label: str
    id: str = ""


def conversation_record(image: str, answer: str, id: str = "", question: str = QUESTION) -> dict[str, Any]:  # noqa: A002
    return {
        "id": id,
        "image": image,
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}"},
            {"from": "gpt", "value": answer},
        ],
    }


def _turns(record: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for turn in record.get("conversations") or record.get("messages") or []:
        who = turn.get("from") or turn.get("role") or ""
        text = turn.get("value") if "value" in turn else turn.get("content", "")
        if isinstance(text, list):  # content parts
            text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        out.append((str(who), str(text)))
    return out


def read_records(path: str | Path, image_root: str | Path | None = None) -> list[Example]:
    """Examples from a conversation JSON file; relative image paths resolve against ``image_root``
    (default: the file's directory). A record whose answer has no valid verdict line is an error."""
    p = Path(path)
    root = Path(image_root) if image_root else p.parent
    raw = json.loads(p.read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{p}: expected a JSON list of records")
    out = []
    for i, rec in enumerate(raw):
        answers = [t for who, t in _turns(rec) if who in {"gpt", "assistant"}]
        if not answers or "image" not in rec:
            raise ValueError(f"{p}[{i}]: needs 'image' and an assistant/gpt turn")
        label = parse_label(answers[-1])
        if label is None:
            raise ValueError(f"{p}[{i}]: the answer has no 'Verdict: <class>' line: {answers[-1][:80]!r}")
        img = Path(rec["image"])
        out.append(
            Example(img if img.is_absolute() else root / img, answers[-1], label, str(rec.get("id", i)))
        )
    return out


def normalize_answer(answer: str) -> str:
    """An answer re-written in the detector's exact format (keeps the reasons text)."""
    label = parse_label(answer)
    if label is None:
        raise ValueError(f"no verdict line in {answer!r:.80}")
    reasons = answer.split("Reasons:", 1)[1] if "Reasons:" in answer else ""
    return format_answer(label, reasons)


class ConversationDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """(image, answer) pairs; training images get a fresh re-share augmentation on every access."""

    def __init__(self, examples: list[Example], augment: Reshare | None = None, seed: int = 0) -> None:
        self.examples = examples
        self.augment = augment
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        with Image.open(ex.image) as im:
            img = im.convert("RGB")
        if self.augment is not None:
            img = self.augment(img, self.rng)
        return {"image": img, "answer": normalize_answer(ex.answer)}


class Collator:
    """Batches (image, answer) into Qwen2.5-VL inputs with labels on the answer tokens only.

    Images go through :func:`detector.resolution.encode` at ``resolution`` (default: serving's default,
    capped by the processor's bounds), so training sees the pixels serving will judge.
    """

    def __init__(self, processor: Any, resolution: Resolution | None = None) -> None:
        self.processor = processor
        self.resolution = for_processor(resolution or Resolution(), processor)
        self.tokenizer = processor.tokenizer
        self.prompt = processor.apply_chat_template(messages(), add_generation_prompt=True, tokenize=False)
        self.end = self.tokenizer.eos_token or "<|im_end|>"
        self.im_start = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.header = self.tokenizer.encode("assistant\n", add_special_tokens=False)

    def answer_start(self, ids: list[int]) -> int:
        """The index of the first answer token: right after the last ``<|im_start|>assistant\\n``."""
        starts = [i for i, t in enumerate(ids) if t == self.im_start]
        if not starts or ids[starts[-1] + 1 : starts[-1] + 1 + len(self.header)] != self.header:
            raise ValueError("no assistant turn in the tokenized example")
        return starts[-1] + 1 + len(self.header)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [self.prompt + b["answer"] + self.end for b in batch]
        self.tokenizer.padding_side = "right"
        enc = encode(self.processor, [b["image"] for b in batch], texts, self.resolution)
        labels = torch.full_like(enc["input_ids"], IGNORE_INDEX)
        for row, ids in enumerate(enc["input_ids"].tolist()):
            start = self.answer_start(ids)
            n = int(enc["attention_mask"][row].sum())
            labels[row, start:n] = enc["input_ids"][row, start:n]
        enc["labels"] = labels
        return dict(enc)
