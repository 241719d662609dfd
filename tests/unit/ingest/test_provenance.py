"""The provenance reader on files written by other tools (the C2PA SDK under a CA made here, exiftool,
Pillow's PNG text chunks) and on hostile or broken metadata, which must come back as unreadable
parts with a reason, never as an exception."""

from __future__ import annotations

import io
import json
import random
import struct
import zlib

import pytest
from PIL import Image

from core.contracts.images import ImageEvent
from core.contracts.provenance import Provenance
from ingest.etl import prepare
from ingest.provenance import ProvenanceConfig, read_provenance
from ingest.provenance.containers import MAX_TEXT_BYTES
from ingest.provenance.xmp import MAX_XMP_BYTES
from misinfo import provenance_samples as ps
from misinfo.samples import scene

needs_exiftool = pytest.mark.skipif(not ps.exiftool_available(), reason="exiftool is not installed")


@pytest.fixture(scope="module")
def ca() -> ps.TestCA:
    return ps.make_test_ca()


@pytest.fixture(scope="module")
def config(ca: ps.TestCA) -> ProvenanceConfig:
    return ProvenanceConfig(trust_pem=ca.root_pem, max_manifest_bytes=100_000)


@pytest.fixture(scope="module")
def img() -> Image.Image:
    return scene(5, (96, 72))


def read(data: bytes, fmt: str, config: ProvenanceConfig) -> Provenance:
    record = read_provenance(data, fmt, config)
    Provenance.model_validate_json(record.model_dump_json())  # what travels must parse back
    return record


# -- C2PA ------------------------------------------------------------------------------------------
def test_a_manifest_declaring_trained_algorithmic_media_is_intact_and_trusted(ca, config, img):
    data = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="trainedAlgorithmicMedia", agent="Gen 2")
    pv = read(data, "JPEG", config)
    assert pv.c2pa.state == "intact" and pv.c2pa.trusted is True
    assert pv.c2pa.digital_source_types == ["trainedAlgorithmicMedia"]
    assert pv.c2pa.actions == ["c2pa.created"] and pv.c2pa.software_agents == ["Gen 2"]
    assert pv.c2pa.claim_generator.startswith("misinfo-watch fixture 1.0")
    assert "signer" in pv.c2pa.signer and pv.state == "c2pa-intact" and not pv.stripped


def test_a_plain_capture_manifest_in_a_png(ca, config, img):
    pv = read(ps.sign_c2pa(ps.png(img), "image/png", ca, source_type="digitalCapture"), "PNG", config)
    assert (pv.c2pa.state, pv.c2pa.trusted, pv.c2pa.digital_source_types) == (
        "intact",
        True,
        ["digitalCapture"],
    )


def test_a_manifest_from_another_ca_verifies_but_is_not_trusted(config, img):
    other = ps.make_test_ca("someone else")
    pv = read(ps.sign_c2pa(ps.jpeg(img), "image/jpeg", other, source_type="digitalCapture"), "JPEG", config)
    assert (pv.c2pa.state, pv.c2pa.trusted) == ("intact", False)
    assert "signingCredential.untrusted" in pv.c2pa.failures


def test_without_a_trust_list_trust_is_not_judged(ca, img):
    data = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="digitalCapture")
    pv = read(data, "JPEG", ProvenanceConfig())
    assert (pv.c2pa.state, pv.c2pa.trusted) == ("intact", None)


def test_pixels_edited_after_signing_make_the_manifest_tampered(ca, config, img):
    signed = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="digitalCapture")
    pv = read(ps.edit_after_signing(signed), "JPEG", config)
    assert pv.c2pa.state == "tampered" and pv.state == "c2pa-tampered"
    assert "assertion.dataHash.mismatch" in pv.c2pa.failures
    assert pv.c2pa.trusted is True  # the signer is still known; the content no longer matches


def test_a_corrupted_manifest_is_unreadable_with_the_reason(ca, config, img):
    signed = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="digitalCapture")
    pv = read(ps.corrupt_manifest(signed), "JPEG", config)
    assert pv.c2pa.state == "unreadable" and pv.state == "unreadable"
    assert pv.c2pa.reason.startswith("C2PA store cannot be read")


def test_an_oversized_manifest_is_not_parsed(ca, config, img):
    data = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="digitalCapture", padding_bytes=150_000)
    pv = read(data, "JPEG", config)
    assert pv.c2pa.state == "unreadable" and "over the 100000-byte limit" in pv.c2pa.reason


# -- exiftool: XMP / IPTC / EXIF -------------------------------------------------------------------
@needs_exiftool
@pytest.mark.parametrize("code", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"])
def test_an_iptc_digital_source_type_written_by_exiftool(config, img, code):
    data = ps.exiftool(ps.jpeg(img), f"-XMP-iptcExt:DigitalSourceType={ps.IPTC}{code}")
    pv = read(data, "JPEG", config)
    assert pv.declared_source_type == code and pv.state == "declared" and "xmp" in pv.metadata


@needs_exiftool
def test_generator_names_in_exif_iptc_and_xmp_fields(config, img):
    data = ps.exiftool(
        ps.jpeg(img),
        "-EXIF:Software=Midjourney v6.1",
        "-IPTC:OriginatingProgram=DALL-E 3",
        "-XMP-xmp:CreatorTool=Adobe Firefly Image 3",
        "-EXIF:Make=Canon",
    )
    pv = read(data, "JPEG", config)
    spoke = {(h.where, h.generator) for h in pv.hints}
    assert spoke == {
        ("EXIF Software", "Midjourney"),
        ("IPTC OriginatingProgram", "DALL-E"),
        ("XMP xmp:CreatorTool", "Adobe Firefly"),
    }
    assert pv.state == "hint" and {"exif", "xmp", "iptc"} <= set(pv.metadata)


@needs_exiftool
def test_a_camera_photo_with_ordinary_exif_is_plain(config, img):
    pv = read(ps.exiftool(ps.jpeg(img), "-EXIF:Make=Canon", "-EXIF:Model=EOS R5"), "JPEG", config)
    assert pv.state == "plain" and not pv.hints and not pv.stripped


@needs_exiftool
@pytest.mark.parametrize("kind", ["c2pa", "xmp", "a1111", "comfyui"])
def test_stripped_copies_say_so(ca, config, img, kind):
    data, suffix, fmt = {
        "c2pa": (ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="trainedAlgorithmicMedia"), ".jpg", "JPEG"),
        "xmp": (ps.exiftool(ps.jpeg(img), f"-XMP-iptcExt:DigitalSourceType={ps.IPTC}trainedAlgorithmicMedia"), ".jpg", "JPEG"),
        "a1111": (ps.a1111_png(img), ".png", "PNG"),
        "comfyui": (ps.comfyui_png(img), ".png", "PNG"),
    }[kind]  # fmt: skip
    assert read(data, fmt, config).state != "stripped"
    pv = read(ps.strip(data, suffix), fmt, config)
    assert pv.stripped and pv.state == "stripped" and pv.metadata == [] and pv.c2pa.state == "absent"


# -- PNG text chunks -------------------------------------------------------------------------------
def test_a1111_parameters_chunk(config, img):
    pv = read(ps.a1111_png(img), "PNG", config)
    ((hint,),) = [pv.hints]
    assert hint.where == "PNG text parameters" and hint.generator.startswith("Stable Diffusion")
    assert hint.value.startswith("a lighthouse") and "png-text" in pv.metadata


def test_comfyui_prompt_and_workflow_chunks(config, img):
    pv = read(ps.comfyui_png(img), "PNG", config)
    assert [(h.where, h.generator) for h in pv.hints] == [
        ("PNG text prompt", "ComfyUI"),
        ("PNG text workflow", "ComfyUI"),
    ]


def test_a_compressed_text_chunk_is_inflated_only_up_to_the_cap(config, img):
    base = ps.png(img)
    bomb = zlib.compress(b"A" * (50 * MAX_TEXT_BYTES), 9)  # 12.5 MiB of text in a few KiB
    body = b"parameters\x00\x00" + bomb
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
    data = base[:33] + chunk + base[33:]  # after IHDR
    pv = read(data, "PNG", config)
    assert len(pv.hints) == 1 and len(pv.hints[0].value) <= 300


# -- hostile or broken ------------------------------------------------------------------------------
def test_billion_laughs_xmp_is_refused_and_recorded(config, img):
    pv = read(ps.billion_laughs_xmp(img), "JPEG", config)
    assert pv.state == "unreadable"
    (part,) = pv.unreadable
    assert part.part == "xmp" and "DTD" in part.reason


def test_an_external_entity_xmp_is_refused(config, img):
    packet = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&x;</x:xmpmeta>'
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", xmp=packet)
    (part,) = read(buf.getvalue(), "JPEG", config).unreadable
    assert part.part == "xmp"


def test_an_xmp_packet_over_the_limit_is_not_parsed(config, img):
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + b" " * (MAX_XMP_BYTES + 10) + b"</x:xmpmeta>"
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=_itxt_xmp(packet))
    (part,) = read(buf.getvalue(), "PNG", config).unreadable
    assert part.part == "xmp" and "over the" in part.reason


def _itxt_xmp(packet: bytes):  # type: ignore[no-untyped-def]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode(), zip=True)
    return info


def test_malformed_xmp_and_deeply_nested_json_are_survived(config, img):
    info = _itxt_xmp(b"<x:xmpmeta><unclosed>")
    info.add_text("prompt", "[" * 100_000)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    pv = read(buf.getvalue(), "PNG", config)
    assert [p.part for p in pv.unreadable] == ["xmp"] and "not well-formed" in pv.unreadable[0].reason


def test_lying_segment_lengths_end_the_walk_with_a_note(config, img):
    data = bytearray(
        ps.exiftool(ps.jpeg(img), "-EXIF:Software=x") if ps.exiftool_available() else ps.jpeg(img)
    )
    data[4:6] = b"\xff\xf0"  # the first segment claims 65 KB
    pv = read(bytes(data), "JPEG", config)
    assert pv.unreadable and pv.unreadable[0].part == "container"


def test_random_bytes_in_every_block_never_raise(ca, config, img):
    rng = random.Random(14)
    seeds = [
        ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="trainedAlgorithmicMedia"),
        ps.a1111_png(img),
        ps.sign_c2pa(ps.png(img), "image/png", ca, source_type="digitalCapture"),
    ]
    for data in seeds:
        fmt = "JPEG" if data[:2] == b"\xff\xd8" else "PNG"
        for _ in range(60):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(2, min(len(mutated), 4000))] = rng.randrange(256)
            read(bytes(mutated), fmt, config)  # any outcome but an exception


def test_the_record_stays_small_whatever_the_image_carries(config, img):
    text = {f"Software{i}": "Midjourney " + "x" * 5000 for i in range(60)}
    pv = read(ps.png(img, text), "PNG", config)
    assert len(pv.hints) == 20 and all(len(h.value) <= 300 for h in pv.hints)
    assert len(pv.model_dump_json()) < 16_000


def test_prepare_reads_provenance_only_when_asked_and_the_event_carries_it(ca, config, img):
    data = ps.sign_c2pa(ps.jpeg(img), "image/jpeg", ca, source_type="trainedAlgorithmicMedia")
    assert prepare(data, 10_000_000).provenance is None
    prepared = prepare(data, 10_000_000, config)
    assert prepared.provenance is not None and prepared.provenance.state == "c2pa-intact"
    old = json.loads(
        ImageEvent(
            image_id=prepared.image_id,
            blob_uri="file:///x",
            source="folder",
            source_item_id="x",
            source_url="file:///x",
            author=None,
            posted_at=None,
            collected_at="2026-11-30T00:00:00Z",  # type: ignore[arg-type]
            width=prepared.width,
            height=prepared.height,
            mime=prepared.mime,
            phash=prepared.phash,
            text="",
            provenance=prepared.provenance,
        ).to_json()
    )
    assert ImageEvent.parse(old).provenance == prepared.provenance
    old.pop("provenance")  # an event from a producer built before the field
    assert ImageEvent.parse(old).provenance is None


def test_trust_anchors_from_a_missing_file_is_a_one_line_error(tmp_path):
    from core.config import load_settings

    settings = load_settings({"MISINFO_C2PA_TRUST_ANCHORS": str(tmp_path / "nope.pem")})
    with pytest.raises(ValueError, match="MISINFO_C2PA_TRUST_ANCHORS=.*cannot be read"):
        ProvenanceConfig.from_settings(settings)
    (tmp_path / "roots.pem").write_text("-----BEGIN CERTIFICATE-----\n...")
    ok = load_settings({"MISINFO_C2PA_TRUST_ANCHORS": str(tmp_path / "roots.pem")})
    assert ProvenanceConfig.from_settings(ok).trust_pem.startswith("-----BEGIN")
