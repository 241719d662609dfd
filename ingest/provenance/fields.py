"""Generator hints in plain metadata: EXIF tags, IPTC-IIM records, PNG text chunks, comments.

Each function returns the fields that spoke, as :class:`~core.contracts.provenance.Hint`s with an
excerpt of the value. A field speaks when it names a known generator, or when it carries
generation parameters whatever tool wrote them (an A1111 ``parameters`` block, a ComfyUI graph).
"""

from __future__ import annotations

import struct

from core.contracts.provenance import Hint
from ingest.provenance.generators import looks_like_a1111, looks_like_comfyui, name_generator

MAX_VALUE = 300

# EXIF tags that name the tool, or carry free text a generator may fill (A1111 writes its
# parameters into UserComment of JPEG and WebP files).
EXIF_TAGS = {
    0x0131: "Software",
    0x013B: "Artist",
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x013C: "HostComputer",
    0x8298: "Copyright",
    0x9C9C: "XPComment",
    0x9C9D: "XPAuthor",
}
EXIF_IFD_TAGS = {0x9286: "UserComment", 0xA430: "CameraOwnerName", 0xA433: "LensMake"}
EXIF_IFD = 0x8769

# IPTC-IIM record 2 datasets worth a look.
IIM_FIELDS = {
    65: "OriginatingProgram",
    70: "ProgramVersion",
    80: "By-line",
    110: "Credit",
    115: "Source",
    120: "Caption-Abstract",
    116: "CopyrightNotice",
}

# PNG text keywords that generators use for their parameters, and the tool each implies.
PARAMETER_KEYS = {
    "parameters": "",  # A1111, Forge, SD.Next: decided by the content
    "prompt": "",  # ComfyUI's API graph (decided by the content)
    "workflow": "",  # ComfyUI's UI graph
    "invokeai_metadata": "InvokeAI",
    "invokeai_graph": "InvokeAI",
    "sd-metadata": "InvokeAI",
    "Dream": "InvokeAI",
    "fooocus_scheme": "Fooocus",
    "generation_data": "",
}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        if value[:8] in (b"ASCII\x00\x00\x00", b"UNICODE\x00", b"JIS\x00\x00\x00\x00\x00", b"\x00" * 8):
            code, body = value[:8], value[8:]  # UserComment: an 8-byte charset code, then the text
            if code.startswith(b"UNICODE"):
                return body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", errors="replace")
            return body.decode("utf-8", errors="replace")
        if len(value) % 2 == 0 and value[1:2] == b"\x00":  # XP* tags: UTF-16-LE
            return value.decode("utf-16-le", errors="replace")
        return value.decode("utf-8", errors="replace")
    return str(value)


def _speak(where: str, text: str) -> Hint | None:
    text = text.replace("\x00", "").strip()
    if not text:
        return None
    generator = name_generator(text)
    if looks_like_a1111(text):
        generator = generator or "Stable Diffusion (A1111-style parameters)"
    if generator:
        return Hint(where=where, value=text[:MAX_VALUE], generator=generator)
    return None


def exif_hints(raw: bytes) -> list[Hint]:
    """Hints in an EXIF block (TIFF structure, without the ``Exif\\0\\0`` header)."""
    from PIL import Image

    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + raw)
    out = []
    items = [(EXIF_TAGS[t], exif[t]) for t in EXIF_TAGS if t in exif]
    sub = exif.get_ifd(EXIF_IFD)
    items += [(EXIF_IFD_TAGS[t], sub[t]) for t in EXIF_IFD_TAGS if t in sub]
    for name, value in items:
        hint = _speak(f"EXIF {name}", _text(value))
        if hint:
            out.append(hint)
    return out


def iptc_records(raw: bytes) -> list[tuple[int, int, bytes]]:
    """(record, dataset, value) of an IPTC-IIM block; stops at the first malformed tag."""
    out = []
    pos = 0
    while pos + 5 <= len(raw) and raw[pos] == 0x1C:
        record, dataset, size = raw[pos + 1], raw[pos + 2], struct.unpack(">H", raw[pos + 3 : pos + 5])[0]
        pos += 5
        if size & 0x8000:  # extended length: not used by the fields we read
            break
        out.append((record, dataset, raw[pos : pos + size]))
        pos += size
    return out


def iptc_hints(raw: bytes) -> list[Hint]:
    out = []
    for record, dataset, value in iptc_records(raw):
        if record == 2 and dataset in IIM_FIELDS:
            hint = _speak(f"IPTC {IIM_FIELDS[dataset]}", value.decode("utf-8", errors="replace"))
            if hint:
                out.append(hint)
    return out


def text_hints(chunks: list[tuple[str, str]], comments: list[str]) -> list[Hint]:
    """Hints in PNG text chunks (and the like) and in comments."""
    out = []
    for key, value in chunks:
        where = f"PNG text {key}"
        if key in PARAMETER_KEYS:
            generator = PARAMETER_KEYS[key] or name_generator(value)
            if key in ("prompt", "workflow") and looks_like_comfyui(value):
                generator = "ComfyUI"
            elif key == "parameters" and looks_like_a1111(value):
                generator = generator or "Stable Diffusion (A1111-style parameters)"
            if generator or key != "prompt":  # a bare "prompt" text chunk says little on its own
                out.append(Hint(where=where, value=value[:MAX_VALUE], generator=generator))
            continue
        hint = _speak(where, value)
        if hint:
            out.append(hint)
    for comment in comments:
        hint = _speak("comment", comment)
        if hint:
            out.append(hint)
    return out
