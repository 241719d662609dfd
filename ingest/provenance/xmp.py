"""XMP packets: the IPTC digital source type, the IPTC AI fields, the tools named, a remote C2PA
manifest reference.

Parsed with defusedxml, DTDs refused: an XMP packet has no business declaring entities, so a
billion-laughs or external-entity packet is refused before any expansion and recorded unreadable.
Packets over ``MAX_XMP_BYTES`` are not parsed at all; a parse walks at most ``MAX_ELEMENTS`` elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from core.contracts.provenance import Hint, short_source_type
from ingest.provenance.generators import name_generator

MAX_XMP_BYTES = 1024 * 1024
MAX_ELEMENTS = 20_000
MAX_VALUE = 300

NS = {
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://purl.org/dc/terms/": "dcterms",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#": "rdf",
    "adobe:ns:meta/": "x",
}
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
# Properties that name a tool: a generator named in one of these is a hint.
TOOL_FIELDS = {
    "xmp:CreatorTool",
    "stEvt:softwareAgent",
    "tiff:Software",
    "Iptc4xmpExt:AISystemUsed",
    "Iptc4xmpExt:AISystemVersionUsed",
    "photoshop:Credit",
    "photoshop:Source",
    "dc:creator",
    "dc:publisher",
}
SOURCE_TYPE = "Iptc4xmpExt:DigitalSourceType"
PROMPT = "Iptc4xmpExt:AIPromptInformation"
REMOTE_MANIFEST = "dcterms:provenance"
STRUCTURE = {"rdf:RDF", "rdf:Description", "rdf:Bag", "rdf:Seq", "rdf:Alt", "rdf:li", "x:xmpmeta"}


class XmpUnreadable(ValueError):
    """The packet could not be read; the message says why (one line)."""


@dataclass
class XmpFindings:
    source_type: str | None = None
    hints: list[Hint] = field(default_factory=list)


def _qname(tag: str) -> str:
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        return f"{NS.get(uri, uri)}:{local}"
    return tag


def parse(packet: bytes) -> XmpFindings:
    """What the packet declares; raise :class:`XmpUnreadable` with the reason."""
    if len(packet) > MAX_XMP_BYTES:
        raise XmpUnreadable(f"XMP packet of {len(packet)} bytes is over the {MAX_XMP_BYTES}-byte limit")
    start = packet.find(b"<")
    if start < 0:
        raise XmpUnreadable("XMP packet holds no XML")
    try:
        root = SafeET.fromstring(packet[start:].rstrip(b"\x00 \t\r\n"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmpUnreadable(
            f"XMP refused: {type(exc).__name__} (DTDs and entities are not allowed)"
        ) from None
    except ParseError as exc:
        raise XmpUnreadable(f"XMP is not well-formed XML: {exc}") from None
    found = XmpFindings()
    seen: set[tuple[str, str]] = set()
    # Depth-first, each element with the property it belongs to: a list's items (rdf:li inside
    # rdf:Bag/Seq/Alt) and nested descriptions speak for the property that holds them.
    stack: list[tuple[Element, str]] = [(root, "")]
    visited = 0
    while stack and visited < MAX_ELEMENTS:
        el, owner = stack.pop()
        visited += 1
        name = _qname(el.tag)
        prop = owner if name in STRUCTURE else name
        pairs = [(_qname(k), v) for k, v in el.attrib.items() if not k.startswith(f"{{{RDF}}}")]
        text = (el.text or "").strip()
        if text and not len(el):
            pairs.append((prop, text))
        resource = el.attrib.get(f"{{{RDF}}}resource")
        if resource:
            pairs.append((prop, resource))
        for key, value in pairs:
            if (key, value) not in seen:
                seen.add((key, value))
                _take(found, key, value)
        stack.extend((child, prop) for child in reversed(el))
    return found


def _take(found: XmpFindings, prop: str, value: str) -> None:
    where = f"XMP {prop}"
    excerpt = value[:MAX_VALUE]
    if prop == SOURCE_TYPE and found.source_type is None:
        found.source_type = short_source_type(value)
    elif prop == PROMPT:
        found.hints.append(Hint(where=where, value=excerpt))
    elif prop == REMOTE_MANIFEST:
        found.hints.append(Hint(where=f"{where} (remote C2PA manifest, not fetched)", value=excerpt))
    elif prop in TOOL_FIELDS:
        generator = name_generator(value)
        if generator or prop.startswith("Iptc4xmpExt:AISystem"):
            found.hints.append(Hint(where=where, value=excerpt, generator=generator or excerpt[:80]))
