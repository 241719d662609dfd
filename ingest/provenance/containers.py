"""Find the metadata blocks of an image file without decoding a pixel: EXIF, XMP, IPTC, text chunks,
comments, an ICC profile, and the size of an embedded C2PA manifest store.

Each walker reads the container's own framing (JPEG markers, PNG chunks, RIFF chunks) with every
length checked against the bytes that are there, so a lying length ends the walk with a note in
``problems`` instead of an exception. Text that needs decompressing (PNG ``zTXt``/``iTXt``) is
inflated up to ``MAX_TEXT_BYTES``. Formats without a walker (GIF, TIFF, BMP) go through Pillow's
header parser, which reads the same blocks into ``info`` and the EXIF directory.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

MAX_TEXT_BYTES = 256 * 1024  # one text chunk or comment, after decompression; the rest is dropped
MAX_TEXT_CHUNKS = 64  # text chunks kept per image
# An XMP packet in a compressed chunk is inflated to one byte past the XMP reader's limit, so the
# reader sees that it is over (ingest/provenance/xmp.py refuses it) without inflating the rest.
MAX_XMP_INFLATE = 1024 * 1024 + 1
XMP_KEY = "XML:com.adobe.xmp"

XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_JPEG_EXTENDED = b"http://ns.adobe.com/xmp/extension/\x00"
PHOTOSHOP = b"Photoshop 3.0\x00"


@dataclass
class Blocks:
    """The raw metadata blocks of one image (bytes as found; parsing is the readers' job)."""

    exif: bytes | None = None
    xmp: bytes | None = None  # the main packet; extended XMP is only noted
    xmp_extended: bool = False
    iptc: bytes | None = None  # IPTC-IIM records (Photoshop resource 0x0404, or a TIFF tag)
    text: list[tuple[str, str]] = field(default_factory=list)  # PNG tEXt/zTXt/iTXt and similar
    comments: list[str] = field(default_factory=list)
    icc: bool = False
    c2pa_bytes: int = 0  # size of the embedded manifest store's boxes (0: none found)
    c2pa_possible: bool = False  # a format without a walker that may hold a manifest
    problems: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """The blocks present, by name (an ICC profile listed last, since it says nothing of origin)."""
        out = []
        if self.c2pa_bytes or self.c2pa_possible:
            out.append("c2pa")
        if self.exif:
            out.append("exif")
        if self.xmp or self.xmp_extended:
            out.append("xmp")
        if self.iptc:
            out.append("iptc")
        if self.text:
            out.append("png-text")
        if self.comments:
            out.append("comment")
        if self.icc:
            out.append("icc")
        return out


def _latin1(b: bytes) -> str:
    return b[:MAX_TEXT_BYTES].decode("latin-1")


def _utf8(b: bytes) -> str:
    return b[:MAX_TEXT_BYTES].decode("utf-8", errors="replace")


def _inflate(b: bytes, cap: int = MAX_TEXT_BYTES) -> bytes:
    return zlib.decompressobj().decompress(b, cap)  # bounded: a zip bomb in a text chunk stops here


def walk_jpeg(data: bytes) -> Blocks:
    out = Blocks()
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            out.problems.append(f"JPEG marker expected at byte {pos}")
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this point
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if length < 2 or pos + 2 + length > n:
            out.problems.append(f"JPEG segment 0x{marker:02X} at byte {pos} runs past the end")
            break
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            out.exif = out.exif or body[6:]
        elif marker == 0xE1 and body.startswith(XMP_JPEG):
            out.xmp = out.xmp or body[len(XMP_JPEG) :]
        elif marker == 0xE1 and body.startswith(XMP_JPEG_EXTENDED):
            out.xmp_extended = True
        elif marker == 0xED and body.startswith(PHOTOSHOP):
            out.iptc = out.iptc or _photoshop_iptc(body[len(PHOTOSHOP) :])
        elif marker == 0xEB and body[:2] == b"JP":  # JUMBF (ISO 19566-5): C2PA lives here
            out.c2pa_bytes += length
        elif marker == 0xE2 and body.startswith(b"ICC_PROFILE\x00"):
            out.icc = True
        elif marker == 0xFE and len(out.comments) < MAX_TEXT_CHUNKS:
            out.comments.append(_utf8(body))
        pos += 2 + length
    return out


def _photoshop_iptc(irb: bytes) -> bytes | None:
    """The IPTC-IIM block (resource 0x0404) of a Photoshop image resource block, if any."""
    pos = 0
    while pos + 12 <= len(irb) and irb[pos : pos + 4] == b"8BIM":
        rid = struct.unpack(">H", irb[pos + 4 : pos + 6])[0]
        name_len = irb[pos + 6]
        pos += 6 + 1 + name_len
        if (name_len + 1) % 2:  # the Pascal name is padded to an even size
            pos += 1
        if pos + 4 > len(irb):
            return None
        size = struct.unpack(">I", irb[pos : pos + 4])[0]
        pos += 4
        if pos + size > len(irb):
            return None
        if rid == 0x0404:
            return irb[pos : pos + size]
        pos += size + (size % 2)
    return None


def walk_png(data: bytes) -> Blocks:
    out = Blocks()
    pos = 8
    n = len(data)
    while pos + 8 <= n:
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + length > n:
            out.problems.append(f"PNG chunk {ctype!r} at byte {pos} runs past the end")
            break
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype == b"caBX":  # C2PA manifest store
            out.c2pa_bytes += length
        elif ctype == b"eXIf":
            out.exif = out.exif or body
        elif ctype == b"iCCP":
            out.icc = True
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            try:
                key, value = _png_text(ctype, body)
            except (ValueError, zlib.error) as exc:
                out.problems.append(f"PNG {ctype.decode()} chunk unreadable: {exc}")
                continue
            if key == XMP_KEY:
                out.xmp = out.xmp or value.encode("utf-8")
            elif key == "Raw profile type exif" or key == "Raw profile type APP1":
                out.exif = out.exif or _raw_profile(value)
            elif key == "Raw profile type iptc":
                out.iptc = out.iptc or _raw_profile(value)
            elif len(out.text) < MAX_TEXT_CHUNKS:
                out.text.append((key, value))
    return out


def _png_text(ctype: bytes, body: bytes) -> tuple[str, str]:
    key, sep, rest = body.partition(b"\x00")
    if not sep or not 1 <= len(key) <= 79:
        raise ValueError("no keyword")
    if ctype == b"tEXt":
        return _latin1(key), _latin1(rest)
    if ctype == b"zTXt":
        return _latin1(key), _latin1(_inflate(rest[1:]))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, text
    if len(rest) < 2:
        raise ValueError("truncated iTXt")
    compressed = rest[0] == 1
    _lang, _, rest2 = rest[2:].partition(b"\x00")
    _translated, _, text = rest2.partition(b"\x00")
    if key.decode("latin-1") == XMP_KEY:  # kept whole up to the XMP limit, not the text cap
        raw = _inflate(text, MAX_XMP_INFLATE) if compressed else text[:MAX_XMP_INFLATE]
        return XMP_KEY, raw.decode("utf-8", errors="replace")
    return _latin1(key), _utf8(_inflate(text) if compressed else text)


def _raw_profile(value: str) -> bytes | None:
    """ImageMagick's ``Raw profile type X`` text: a name line, a length line, then hex digits."""
    lines = value.strip().split("\n", 2)
    if len(lines) < 3:
        return None
    try:
        raw = bytes.fromhex("".join(lines[2].split()))
    except ValueError:
        return None
    return raw[6:] if raw.startswith(b"Exif\x00\x00") else raw


def walk_webp(data: bytes) -> Blocks:
    out = Blocks()
    pos = 12
    n = len(data)
    while pos + 8 <= n:
        ctype, length = struct.unpack("<4sI", data[pos : pos + 8])
        if pos + 8 + length > n:
            out.problems.append(f"WebP chunk {ctype!r} at byte {pos} runs past the end")
            break
        body = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length % 2)
        if ctype == b"EXIF":
            out.exif = out.exif or (body[6:] if body.startswith(b"Exif\x00\x00") else body)
        elif ctype == b"XMP ":
            out.xmp = out.xmp or body
        elif ctype == b"ICCP":
            out.icc = True
        elif ctype == b"C2PA":
            out.c2pa_bytes += length
    return out


def walk_other(data: bytes) -> Blocks:
    """GIF, TIFF, BMP: Pillow's header parser (no pixels decoded) fills ``info`` and the EXIF."""
    from PIL import Image

    out = Blocks()
    with Image.open(io.BytesIO(data)) as im:
        info = im.info
        exif = im.getexif()
        if len(exif):
            buf = exif.tobytes()
            out.exif = buf[6:] if buf.startswith(b"Exif\x00\x00") else buf
        xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
        if xmp:
            out.xmp = xmp if isinstance(xmp, bytes) else str(xmp).encode("utf-8")
        tags = getattr(im, "tag_v2", None)
        if tags is not None:
            if 700 in tags and not out.xmp:
                value = tags[700]
                out.xmp = value if isinstance(value, bytes) else str(value).encode("utf-8")
            if 33723 in tags:
                value = tags[33723]
                out.iptc = value if isinstance(value, bytes) else bytes(value) if value else None
        if info.get("comment"):
            c = info["comment"]
            out.comments.append(_utf8(c) if isinstance(c, bytes) else str(c)[:MAX_TEXT_BYTES])
        out.icc = bool(info.get("icc_profile"))
    out.c2pa_possible = b"c2pa" in data  # the manifest store's box label; without it there is none
    return out


def walk(data: bytes, fmt: str) -> Blocks:
    """The metadata blocks of ``data``, a file of Pillow format ``fmt`` (JPEG, PNG, WEBP, ...)."""
    if fmt in ("JPEG", "MPO"):
        return walk_jpeg(data)
    if fmt == "PNG":
        return walk_png(data)
    if fmt == "WEBP":
        return walk_webp(data)
    return walk_other(data)
