"""Augmentations that match how images get re-shared: JPEG re-encoding at a random quality, resizing
and cropping (each applied with a probability), so training sees the traces platforms leave."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Reshare:
    jpeg_quality: tuple[int, int] = (35, 95)
    resize_scale: tuple[float, float] = (0.5, 1.0)
    crop_fraction: tuple[float, float] = (0.8, 1.0)
    probability: float = 0.8
    min_side: int = 28  # the processor's patch grid needs at least one 28x28 merged patch

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        img = image.convert("RGB")
        if rng.random() < self.probability:
            img = crop(img, rng.uniform(*self.crop_fraction), rng, self.min_side)
        if rng.random() < self.probability:
            img = resize(img, rng.uniform(*self.resize_scale), self.min_side)
        if rng.random() < self.probability:
            img = jpeg(img, rng.randint(*self.jpeg_quality))
        return img


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def resize(image: Image.Image, scale: float, min_side: int = 28) -> Image.Image:
    w, h = image.size
    nw, nh = max(min_side, round(w * scale)), max(min_side, round(h * scale))
    return image.resize((nw, nh), Image.Resampling.BILINEAR)


def crop(image: Image.Image, fraction: float, rng: random.Random, min_side: int = 28) -> Image.Image:
    w, h = image.size
    cw, ch = max(min(w, min_side), round(w * fraction)), max(min(h, min_side), round(h * fraction))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return image.crop((x, y, x + cw, y + ch))
