"""Sample images the project generates itself (no downloads) for the demo, tests and benchmarks:
procedural scenes (sky gradient, ground, sun, shapes, sensor noise) in varied sizes and formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A deterministic, photo-like procedural scene."""
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(60, 255, 3), rng.integers(0, 200, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t).repeat(w, axis=1)
    img = Image.fromarray(sky.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.5, 0.8))
    draw.rectangle([0, horizon, w, h], fill=tuple(int(v) for v in rng.integers(20, 140, 3)))
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(5, max(6, min(w, h) // 4)))
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=color)
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
    noise = rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def write_samples(folder: str | Path, n: int = 8, seed: int = 0) -> list[Path]:
    """Write ``n`` distinct sample images (JPEG, PNG and WebP, several sizes) into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [(320, 240), (240, 320), (400, 300), (256, 256), (512, 288)]
    formats = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")]
    paths = []
    for i in range(n):
        ext, fmt = formats[i % len(formats)]
        path = out / f"sample-{seed}-{i:03d}.{ext}"
        scene(seed * 10_000 + i, sizes[i % len(sizes)]).save(path, fmt, quality=90)
        paths.append(path)
    return paths


def bench_images(n: int, seed: int = 0, min_side: int = 48, max_side: int = 160) -> list[Image.Image]:
    """``n`` deterministic synthetic RGB images of different sizes (gradients, shapes, noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], axis=-1)
        noisy = base + rng.normal(0, 20, size=base.shape)
        im = Image.fromarray(np.clip(noisy, 0, 255).astype("uint8"), "RGB")
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
            x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
            draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 256, size=3)))
        out.append(im)
    return out
