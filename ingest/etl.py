"""Decode, validate and normalize one image; compute its identity (sha256) and perceptual hash, and
(when asked) read its provenance metadata (``ingest/provenance``).

Decompression bombs are refused by pixel count from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError

from ingest.blobs import sha256_hex
from ingest.exceptions import BadInput

if TYPE_CHECKING:
    from core.contracts.provenance import Provenance
    from ingest.provenance import ProvenanceConfig

# Formats a feed serves as photos; anything else (SVG, PDF, HTML...) is refused.
ALLOWED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "MPO": "image/jpeg",
}


@dataclass(frozen=True)
class PreparedImage:
    image_id: str  # sha256 of the original bytes
    width: int
    height: int
    mime: str
    phash: str
    image: Image.Image  # RGB, EXIF orientation applied, first frame
    provenance: Provenance | None = None  # read only when prepare() is given a ProvenanceConfig


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB whatever the mode: CMYK, palette, alpha (composited on white), 16-bit, greyscale."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white.
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_rgb(data: bytes, max_pixels: int) -> tuple[str, Image.Image]:
    """Decode ``data`` to an RGB image (first frame, EXIF orientation applied) and its format name;
    raise :class:`BadInput` (stage ``etl``) with the reason when it is not a usable image."""
    if not data:
        raise BadInput("etl", "empty body (0 bytes)")
    fmt = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            fmt = probe.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise BadInput("etl", f"unsupported image format {fmt or 'unknown'}")
            w, h = probe.size
            if w * h > max_pixels:
                raise BadInput("etl", f"decompression bomb: {w}x{h} = {w * h} pixels > {max_pixels}")
            probe.verify()  # structure and checksums; the object is unusable afterwards
            img = Image.open(io.BytesIO(data))
            img.seek(0)  # first frame of an animation
            img.load()
            img = ImageOps.exif_transpose(img) or img  # type: ignore[assignment]
            return fmt, to_rgb(img)
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput("etl", "not an image (content not recognised as any image format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInput("etl", f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInput("etl", f"corrupt {fmt or 'image'}: {exc}") from None


def prepare(data: bytes, max_pixels: int, provenance: ProvenanceConfig | None = None) -> PreparedImage:
    """Validate and normalize ``data``; raise :class:`BadInput` (stage ``etl``) with the reason.

    With ``provenance``, the image's metadata is read too (never fatal: a bad block is recorded
    unreadable in the record, and the image goes on)."""
    fmt, rgb = decode_rgb(data, max_pixels)
    record = None
    if provenance is not None:
        from ingest.provenance import read_provenance

        record = read_provenance(data, fmt, provenance)
    return PreparedImage(
        image_id=sha256_hex(data),
        width=rgb.width,
        height=rgb.height,
        mime=ALLOWED_FORMATS[fmt],
        phash=str(imagehash.phash(rgb)),
        image=rgb,
        provenance=record,
    )
