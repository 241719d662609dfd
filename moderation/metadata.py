"""Every metadata field of an image, for the item page's metadata panel: EXIF (with the Exif and GPS
directories), XMP properties, IPTC-IIM datasets, PNG text chunks and comments.

The provenance card shows what ingest's reader made of the metadata (the fields that *spoke*); this
panel shows all of it, and marks the fields that spoke (``Field.spoke``) by the names the reader
gives them (``Hint.where``, e.g. ``EXIF Software``). It reads the blocks with ingest's own container
walker (lengths checked, decompression bounded, no pixel decoded) and the XMP packet with defusedxml
(DTDs refused, at most ``MAX_ELEMENTS`` elements); every value is cut at ``MAX_VALUE`` characters and
a section at ``MAX_FIELDS`` fields. Metadata is attacker-controlled text: the page escapes it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from core.contracts.provenance import Provenance

MAX_VALUE = 500
MAX_FIELDS = 300

EXIF_IFD, GPS_IFD, MAKER_NOTE = 0x8769, 0x8825, 0x927C
# IPTC-IIM record 2 (application) datasets by number (IPTC-NAA Information Interchange Model 4.2).
IIM_NAMES = {
    5: "ObjectName",
    15: "Category",
    20: "SupplementalCategory",
    25: "Keywords",
    40: "SpecialInstructions",
    55: "DateCreated",
    60: "TimeCreated",
    62: "DigitalCreationDate",
    63: "DigitalCreationTime",
    65: "OriginatingProgram",
    70: "ProgramVersion",
    80: "By-line",
    85: "By-lineTitle",
    90: "City",
    92: "Sub-location",
    95: "Province-State",
    100: "Country-PrimaryLocationCode",
    101: "Country-PrimaryLocationName",
    103: "OriginalTransmissionReference",
    105: "Headline",
    110: "Credit",
    115: "Source",
    116: "CopyrightNotice",
    118: "Contact",
    120: "Caption-Abstract",
    122: "Writer-Editor",
}


@dataclass
class Field:
    key: str
    value: str
    truncated: bool = False  # the value was longer than MAX_VALUE characters
    spoke: bool = False  # the provenance reader found a generator (or a declaration) here


@dataclass
class Section:
    name: str  # EXIF, XMP, IPTC, PNG text, Comment
    fields: list[Field] = field(default_factory=list)
    more: int = 0  # fields past MAX_FIELDS, not listed


@dataclass
class Metadata:
    format: str
    width: int
    height: int
    size_bytes: int
    icc_profile: bool
    c2pa_store_bytes: int
    sections: list[Section]
    problems: list[str]


def _cut(text: str) -> tuple[str, bool]:
    text = text.replace("\x00", "").strip()
    return (text[:MAX_VALUE], True) if len(text) > MAX_VALUE else (text, False)


def _value(value: Any) -> str:
    from ingest.provenance.fields import _text

    if isinstance(value, bytes):
        decoded = _text(value)
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
        return (
            decoded if decoded and printable / len(decoded) > 0.9 else f"({len(value)} bytes of binary data)"
        )
    if isinstance(value, tuple):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _add(section: Section, key: str, value: str, spoke: set[str], where: str = "") -> None:
    """Add one field; ``where`` is the provenance reader's name for it (default: section and key)."""
    if len(section.fields) >= MAX_FIELDS:
        section.more += 1
        return
    text, cut = _cut(value)
    section.fields.append(Field(key, text, cut, (where or f"{section.name} {key}") in spoke))


def _exif(raw: bytes, spoke: set[str]) -> Section:
    from PIL import ExifTags, Image

    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + raw)
    out = Section("EXIF")
    for tag, value in exif.items():
        if tag not in (EXIF_IFD, GPS_IFD):
            _add(out, ExifTags.TAGS.get(tag, f"0x{tag:04x}"), _value(value), spoke)
    for tag, value in exif.get_ifd(EXIF_IFD).items():
        name = ExifTags.TAGS.get(tag, f"0x{tag:04x}")
        text = f"({len(value)} bytes, maker-specific)" if tag == MAKER_NOTE else _value(value)
        _add(out, name, text, spoke)
    for tag, value in exif.get_ifd(GPS_IFD).items():
        _add(out, ExifTags.GPSTAGS.get(tag, f"GPS 0x{tag:04x}"), _value(value), spoke)
    return out


def _xmp(packet: bytes, spoke: set[str]) -> Section:
    """Every (property, value) of the packet, in document order, the way ingest's reader names them."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    from ingest.provenance.xmp import MAX_ELEMENTS, MAX_XMP_BYTES, NS, RDF, STRUCTURE, XmpUnreadable

    def qname(tag: str) -> str:
        if tag.startswith("{"):
            uri, local = tag[1:].split("}", 1)
            return f"{NS.get(uri, uri)}:{local}"
        return tag

    if len(packet) > MAX_XMP_BYTES:
        raise XmpUnreadable(f"XMP packet of {len(packet)} bytes is over the {MAX_XMP_BYTES}-byte limit")
    start = packet.find(b"<")
    try:
        root = SafeET.fromstring(packet[max(start, 0) :].rstrip(b"\x00 \t\r\n"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmpUnreadable(f"refused: {type(exc).__name__} (DTDs and entities are not allowed)") from None
    out = Section("XMP")
    stack: list[tuple[Any, str]] = [(root, "")]
    visited = 0
    while stack and visited < MAX_ELEMENTS:
        el, owner = stack.pop()
        visited += 1
        name = qname(el.tag)
        prop = owner if name in STRUCTURE else name
        for k, v in el.attrib.items():
            if not k.startswith(f"{{{RDF}}}") and not k.startswith("{http://www.w3.org/XML/1998/namespace}"):
                _add(out, qname(k), v, spoke)
        text = (el.text or "").strip()
        if text and not len(el):
            _add(out, prop, text, spoke)
        resource = el.attrib.get(f"{{{RDF}}}resource")
        if resource:
            _add(out, prop, resource, spoke)
        stack.extend((child, prop) for child in reversed(el))
    return out


def _iptc(raw: bytes, spoke: set[str]) -> Section:
    from ingest.provenance.fields import iptc_records

    out = Section("IPTC")
    for record, dataset, value in iptc_records(raw):
        if record == 2 and dataset != 0:  # 2:00 is the record version
            _add(out, IIM_NAMES.get(dataset, f"2:{dataset:03d}"), value.decode("utf-8", "replace"), spoke)
    return out


def metadata_of(blob_uri: str, provenance: Provenance | None = None) -> Metadata:
    """The metadata of a stored image (blocking: run it in an executor); raises ``BlobNotFound``."""
    from ingest.blobs import read_blob

    return read_metadata(read_blob(blob_uri), provenance)


def read_metadata(data: bytes, provenance: Provenance | None = None) -> Metadata:
    """Every field of ``data``'s metadata; a part that cannot be read is named in ``problems``."""
    from PIL import Image

    from ingest.provenance import containers
    from ingest.provenance.xmp import XmpUnreadable

    with Image.open(io.BytesIO(data)) as im:  # the header only: no pixel is decoded
        fmt, (width, height) = im.format or "", im.size
    spoke = {h.where for h in provenance.hints} if provenance else set()
    if provenance and provenance.declared_source_type:
        spoke.add("XMP Iptc4xmpExt:DigitalSourceType")
    problems: list[str] = []
    blocks = containers.walk(data, fmt)
    problems += blocks.problems[:5]
    sections: list[Section] = []
    parts: list[tuple[str, Any, Any]] = [
        ("EXIF", _exif, blocks.exif),
        ("XMP", _xmp, blocks.xmp),
        ("IPTC", _iptc, blocks.iptc),
    ]
    for name, read, raw in parts:
        if not raw:
            continue
        try:
            sections.append(read(raw, spoke))
        except Exception as exc:  # noqa: BLE001 - hostile metadata: one line, the other parts still show
            why = str(exc) if isinstance(exc, XmpUnreadable) else f"{type(exc).__name__}: {exc}"
            problems.append(f"{name} unreadable: {why}"[:300])
    if blocks.text:
        text = Section("PNG text")
        for key, value in blocks.text:
            _add(text, key, value, spoke)
        sections.append(text)
    if blocks.comments:
        comments = Section("Comment")
        for value in blocks.comments:
            _add(comments, "comment", value, spoke, where="comment")
        sections.append(comments)
    return Metadata(fmt, width, height, len(data), blocks.icc, blocks.c2pa_bytes, sections, problems)
