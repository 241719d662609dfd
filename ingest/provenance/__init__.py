"""The provenance reader: what an image's own metadata says about its origin, read at ingest.

``read_provenance(data, fmt, config)`` returns a :class:`~core.contracts.provenance.Provenance`
and never raises: each part (container, C2PA, XMP, EXIF, IPTC, text chunks) is read on its own,
and a part that fails (malformed, hostile, over a limit) is recorded in ``unreadable`` with the
reason while the others still count. The image itself is judged either way.

Modules: ``containers`` (find the blocks without decoding pixels), ``manifest`` (C2PA through the
SDK), ``xmp`` (defusedxml), ``fields`` (EXIF, IPTC-IIM, PNG text), ``generators`` (the names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.contracts.provenance import C2paEvidence, Hint, Provenance, Unreadable

log = logging.getLogger(__name__)

MAX_HINTS = 20
C2PA_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
             "TIFF": "image/tiff", "GIF": "image/gif"}  # fmt: skip


class ProvenanceConfigError(ValueError):
    """A provenance setting that cannot be used (the message names it and the remedy)."""


@dataclass(frozen=True)
class ProvenanceConfig:
    """``trust_pem``: PEM bundle of trusted C2PA signing roots ('' = judge no trust);
    ``max_manifest_bytes``: a larger embedded manifest store is not parsed (recorded unreadable)."""

    trust_pem: str = ""
    max_manifest_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> ProvenanceConfig:
        """From ``MISINFO_C2PA_TRUST_ANCHORS`` (a PEM file's path, or PEM text) and
        ``MISINFO_C2PA_MAX_MANIFEST_BYTES``; a path that cannot be read is an error naming it."""
        anchors = str(settings.c2pa_trust_anchors or "").strip()
        if anchors and "-----BEGIN" not in anchors:
            try:
                anchors = Path(anchors).read_text()
            except OSError as exc:
                raise ProvenanceConfigError(
                    f"MISINFO_C2PA_TRUST_ANCHORS={anchors!r} cannot be read ({exc.strerror}); "
                    "point it at a PEM file of trusted C2PA roots, or leave it empty"
                ) from None
        return cls(trust_pem=anchors, max_manifest_bytes=int(settings.c2pa_max_manifest_bytes))


def read_provenance(data: bytes, fmt: str, config: ProvenanceConfig | None = None) -> Provenance:
    """The provenance record of ``data`` (a file of Pillow format ``fmt``). Never raises."""
    from ingest.provenance import containers, fields, xmp
    from ingest.provenance.manifest import read_manifest

    config = config or ProvenanceConfig()
    unreadable: list[Unreadable] = []
    hints: list[Hint] = []

    def attempt(part: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except xmp.XmpUnreadable as exc:
            unreadable.append(Unreadable(part=part, reason=str(exc)[:300]))
        except Exception as exc:  # noqa: BLE001 - hostile metadata must never stop ingest
            log.debug("provenance part %s unreadable", part, exc_info=True)
            unreadable.append(Unreadable(part=part, reason=f"{type(exc).__name__}: {exc}"[:300]))
        return None

    blocks = attempt("container", containers.walk, data, fmt) or containers.Blocks()
    unreadable += [Unreadable(part="container", reason=p[:300]) for p in blocks.problems[:5]]

    c2pa = C2paEvidence()
    if blocks.c2pa_bytes > config.max_manifest_bytes:
        c2pa = C2paEvidence(
            state="unreadable",
            reason=f"C2PA store of {blocks.c2pa_bytes} bytes is over the {config.max_manifest_bytes}-byte limit",
        )
    elif (blocks.c2pa_bytes or blocks.c2pa_possible) and fmt in C2PA_MIME:
        found_c2pa = attempt("c2pa", read_manifest, data, C2PA_MIME[fmt], config.trust_pem)
        if found_c2pa is None:  # the SDK itself failed: the reason goes with the C2PA evidence
            found_c2pa = C2paEvidence(state="unreadable", reason=unreadable.pop().reason)
        c2pa = found_c2pa

    declared = None
    if blocks.xmp:
        found = attempt("xmp", xmp.parse, blocks.xmp)
        if found is not None:
            declared = found.source_type
            hints += found.hints
    if blocks.exif:
        hints += attempt("exif", fields.exif_hints, blocks.exif) or []
    if blocks.iptc:
        hints += attempt("iptc", fields.iptc_hints, blocks.iptc) or []
    if blocks.text or blocks.comments:
        hints += attempt("png-text", fields.text_hints, blocks.text, blocks.comments) or []

    present = [k for k in blocks.kinds() if k != "c2pa" or c2pa.state != "absent"]
    return Provenance(
        c2pa=c2pa,
        declared_source_type=declared,
        hints=hints[:MAX_HINTS],
        metadata=present,
        stripped=not [k for k in present if k != "icc"],
        unreadable=unreadable[:10],
    )
