"""Image bytes for ingest tests, each a real file of the kind the issue lists (made here, no downloads)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from misinfo.samples import scene


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(seed: int = 1, size: tuple[int, int] = (320, 240), quality: int = 90) -> bytes:
    return encode(scene(seed, size), "JPEG", quality=quality)


def png(seed: int = 2) -> bytes:
    return encode(scene(seed), "PNG")


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width×height pixels (10 billion by default), with a tiny body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in [(220, 20, 20), (20, 220, 20), (20, 20, 220)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def cmyk_jpeg(seed: int = 3) -> bytes:
    return encode(scene(seed).convert("CMYK"), "JPEG", quality=90)


def png_16bit() -> bytes:
    arr = (np.linspace(0, 65535, 96 * 64).reshape(64, 96)).astype(np.uint16)
    return encode(Image.fromarray(arr), "PNG")


def png_alpha(seed: int = 4) -> bytes:
    img = scene(seed).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    return encode(img, "PNG")


def exif_rotated_jpeg(seed: int = 5) -> bytes:
    """320×240 pixels stored, EXIF orientation 6: displays as 240×320."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(scene(seed, (320, 240)), "JPEG", quality=90, exif=exif.tobytes())


def webp(seed: int = 6) -> bytes:
    return encode(scene(seed), "WEBP", quality=85)


def tiff(seed: int = 7) -> bytes:
    return encode(scene(seed), "TIFF")


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
HTML = b"<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>"
