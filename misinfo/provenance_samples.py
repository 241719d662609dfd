"""Images that carry provenance, written by tools other than the project's reader: C2PA manifests
signed with the C2PA SDK (``c2pa-python``) under a certificate chain generated on the spot
(``cryptography``), XMP / IPTC / EXIF written by exiftool (Debian's ``libimage-exiftool-perl``),
PNG text chunks written by Pillow the way AUTOMATIC1111 and ComfyUI write them.

The tests build their fixtures with it, and ``misinfo bench robustness`` its provenance variants.
Nothing here is downloaded.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111_PARAMETERS = (
    "a lighthouse on a cliff at dusk, dramatic clouds, highly detailed\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 96x72, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0"
)
COMFYUI_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 8, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox in the snow", "clip": ["4", 1]}},
}
COMFYUI_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}


@dataclass(frozen=True)
class TestCA:
    """A root CA and a C2PA signing certificate under it (ES256, EKU emailProtection)."""

    root_pem: str
    chain_pem: str  # signer certificate, then the root
    key_pem: str  # the signer's private key (PKCS#8)


def make_test_ca(org: str = "misinfo-watch test CA") -> TestCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
        )

    def usage(**on: bool) -> x509.KeyUsage:
        flags = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        return x509.KeyUsage(**{**flags, **on})

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(name(f"{org} root"))
        .issuer_name(name(f"{org} root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(f"{org} signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )

    def pem(c: Any) -> str:
        return str(c.public_bytes(serialization.Encoding.PEM).decode())

    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return TestCA(root_pem=pem(root), chain_pem=pem(cert) + pem(root), key_pem=key_pem)


def sign_c2pa(
    data: bytes,
    mime: str,
    ca: TestCA,
    *,
    source_type: str | None,
    generator: str = "misinfo-watch fixture",
    agent: str = "",
    action: str = "c2pa.created",
    padding_bytes: int = 0,
) -> bytes:
    """``data`` with a C2PA manifest signed by ``ca``: one action, with ``source_type`` (a short
    IPTC code) when given; ``padding_bytes`` adds a custom assertion of that size (a big manifest)."""
    import c2pa

    act: dict[str, Any] = {"action": action}
    if source_type:
        act["digitalSourceType"] = IPTC + source_type
    if agent:
        act["softwareAgent"] = {"name": agent}
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions", "data": {"actions": [act]}}]
    if padding_bytes:
        assertions.append({"label": "org.misinfo.padding", "data": {"pad": "x" * padding_bytes}})
    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "fixture",
        "assertions": assertions,
    }
    ctx = c2pa.Context.from_dict(
        {"builder": {"thumbnail": {"enabled": False}}, "verify": {"verify_after_sign": False}}
    )
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, ca.chain_pem.encode(), ca.key_pem.encode(), None)
    )
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=ctx) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def edit_after_signing(jpeg: bytes) -> bytes:
    """A signed JPEG with one byte of its compressed pixels changed: the manifest's hash fails."""
    edited = bytearray(jpeg)
    edited[-10] ^= 0xFF  # inside the entropy-coded data, before the EOI marker
    return bytes(edited)


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(img: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """A PNG with ``tEXt`` chunks as Pillow's ``PngInfo`` writes them (as A1111 and ComfyUI do)."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def a1111_png(img: Image.Image) -> bytes:
    return png(img, {"parameters": A1111_PARAMETERS})


def comfyui_png(img: Image.Image) -> bytes:
    return png(img, {"prompt": json.dumps(COMFYUI_PROMPT), "workflow": json.dumps(COMFYUI_WORKFLOW)})


def exiftool_available() -> bool:
    return shutil.which("exiftool") is not None


def exiftool(data: bytes, *tags: str, suffix: str = ".jpg") -> bytes:
    """``data`` rewritten by exiftool with ``tags`` (``-XMP-iptcExt:DigitalSourceType=...``, ``-all=``)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="exiftool-") as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(data)
        subprocess.run(
            ["exiftool", "-q", "-overwrite_original", *tags, str(path)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return path.read_bytes()


def strip(data: bytes, suffix: str = ".jpg") -> bytes:
    """A copy with every metadata block removed (exiftool ``-all=``): the same pixels."""
    return exiftool(data, "-all=", suffix=suffix)


def billion_laughs_xmp(img: Image.Image) -> bytes:
    """A JPEG whose XMP packet declares nested entities (the billion-laughs expansion attack).

    Pillow writes the APP1 segment as given: exiftool would refuse to write such a packet."""
    levels = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">' for i in range(1, 10)
    ]
    packet = (
        '<?xml version="1.0"?>\n<!DOCTYPE x:xmpmeta [\n' + "\n".join(levels) + "\n]>\n"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:CreatorTool>&lol9;</xmp:CreatorTool>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90, xmp=packet.encode())
    return buf.getvalue()


def corrupt_manifest(signed_jpeg: bytes) -> bytes:
    """A signed JPEG whose manifest store's bytes are zeroed past its first boxes: unparseable."""
    at = signed_jpeg.find(b"\xff\xeb")
    if at < 0:
        raise ValueError("no JUMBF segment (APP11) in this JPEG")
    out = bytearray(signed_jpeg)
    for i in range(at + 60, min(at + 400, len(out) - 2)):
        out[i] = 0
    return bytes(out)
