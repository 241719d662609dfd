"""``misinfo bench robustness``: what re-sharing does to verdicts and to provenance.

Each image is re-shared the way platforms and people do it, one transformation at a time:

- ``jpeg95``, ``jpeg75``, ``jpeg60``: one JPEG re-encode at that quality;
- ``down50``, ``down25``: downscaled to 0.5 and 0.25 of each side (Lanczos);
- ``crop80``: the centre 80 % of each side;
- ``screenshot``: shown at 1.25x (bilinear, a HiDPI display) and captured as a PNG;
- ``strip``: the same pixels with every metadata block removed.

Geometric transformations save in the source's format (PNG stays PNG, JPEG is re-encoded at 95), so
each row measures its own change. Metadata: the re-encodes keep EXIF and XMP (and PNG text when the
output is PNG), as a careful tool does; a C2PA manifest never survives a re-encode (it is not
carried, and would no longer verify); ``screenshot`` and ``strip`` keep nothing.

Per model (one JSON line each): the verdict flip rate and the shift of P(manipulated)+P(synthesized)
per transformation (and accuracy when labels are known). Per transformation, independent of the
model: how many provenance signals survive, on copies of the first images carrying each kind (a
C2PA manifest declaring AI, signed under a CA made here; an XMP IPTC source type; an EXIF
``Software`` naming a generator; an A1111 ``parameters`` PNG chunk).
"""

from __future__ import annotations

import io
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from PIL import Image

Transform = Callable[[bytes], bytes]
SIGNALS = ("c2pa", "xmp", "exif", "png-text")
XMP_AI = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
    "</rdf:RDF></x:xmpmeta>"
)


def _say(msg: str) -> None:
    click.echo(msg, err=True)


# --- re-sharing ------------------------------------------------------------------------------------
def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _kept(src: Image.Image, fmt: str) -> dict[str, Any]:
    """Save arguments that carry EXIF, XMP (and PNG text into a PNG) over, as a careful tool does."""
    kw: dict[str, Any] = {}
    exif = src.info.get("exif")
    if exif:
        kw["exif"] = exif
    xmp = src.info.get("xmp") or src.info.get("XML:com.adobe.xmp")
    if xmp:
        kw["xmp"] = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in src.info.items():
            if isinstance(key, str) and isinstance(value, str) and key != "XML:com.adobe.xmp":
                info.add_text(key, value)
        kw["pnginfo"] = info
    return kw


def _save(img: Image.Image, fmt: str, src: Image.Image | None, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    kw = _kept(src, fmt) if src is not None else {}
    if fmt == "JPEG":
        img.convert("RGB").save(buf, "JPEG", quality=quality, **kw)
    else:
        img.convert("RGB").save(buf, "PNG", **kw)
    return buf.getvalue()


def jpeg(quality: int) -> Transform:
    def run(data: bytes) -> bytes:
        src = _open(data)
        return _save(src, "JPEG", src, quality)

    return run


def scale(factor: float) -> Transform:
    def run(data: bytes) -> bytes:
        src = _open(data)
        size = (max(8, round(src.width * factor)), max(8, round(src.height * factor)))
        return _save(src.convert("RGB").resize(size, Image.Resampling.LANCZOS), src.format or "PNG", src)

    return run


def crop(share: float) -> Transform:
    def run(data: bytes) -> bytes:
        src = _open(data)
        w, h = round(src.width * share), round(src.height * share)
        x, y = (src.width - w) // 2, (src.height - h) // 2
        return _save(src.convert("RGB").crop((x, y, x + w, y + h)), src.format or "PNG", src)

    return run


def screenshot(data: bytes) -> bytes:
    src = _open(data).convert("RGB")
    shown = src.resize((round(src.width * 1.25), round(src.height * 1.25)), Image.Resampling.BILINEAR)
    return _save(shown, "PNG", None)


def strip(data: bytes) -> bytes:
    """The same pixels, no metadata: PNG re-saved losslessly; JPEG without its APPn/COM segments."""
    if data[:2] != b"\xff\xd8":
        return _save(_open(data), "PNG", None)
    out, pos = bytearray(data[:2]), 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is pixels
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):  # keep JFIF (APP0) and the coding segments
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + data[pos:])


TRANSFORMS: dict[str, Transform] = {
    "jpeg95": jpeg(95),
    "jpeg75": jpeg(75),
    "jpeg60": jpeg(60),
    "down50": scale(0.5),
    "down25": scale(0.25),
    "crop80": crop(0.8),
    "screenshot": screenshot,
    "strip": strip,
}


# --- provenance signals ----------------------------------------------------------------------------
def signal_variants(img: Image.Image, ca: Any) -> dict[str, bytes]:
    """One copy of ``img`` per kind of provenance signal (the tools: the C2PA SDK and Pillow)."""
    from misinfo import provenance_samples as ps

    rgb = img.convert("RGB")
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    with_exif = buf.getvalue()
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=95, xmp=XMP_AI.encode())
    return {
        "c2pa": ps.sign_c2pa(ps.jpeg(rgb, 95), "image/jpeg", ca, source_type="trainedAlgorithmicMedia"),
        "xmp": buf.getvalue(),
        "exif": with_exif,
        "png-text": ps.a1111_png(rgb),
    }


def signal_state(kind: str, data: bytes, trust_pem: str) -> str:
    """``kept``, ``tampered`` (a C2PA manifest that no longer verifies) or ``lost``."""
    from ingest.etl import decode_rgb
    from ingest.provenance import ProvenanceConfig, read_provenance

    fmt, _ = decode_rgb(data, 100_000_000)
    pv = read_provenance(data, fmt, ProvenanceConfig(trust_pem=trust_pem))
    if kind == "c2pa":
        return {"intact": "kept", "tampered": "tampered"}.get(pv.c2pa.state, "lost")
    if kind == "xmp":
        return "kept" if pv.declared_source_type == "trainedAlgorithmicMedia" else "lost"
    if kind == "exif":
        return "kept" if any(h.where == "EXIF Software" for h in pv.hints) else "lost"
    return "kept" if any(h.where.startswith("PNG text") for h in pv.hints) else "lost"


def reader_ms(variants: list[dict[str, bytes]], trust_pem: str, repeat: int = 20) -> dict[str, float]:
    """Median milliseconds of one provenance read per kind of file (the SDK's setup excluded)."""
    from ingest.provenance import ProvenanceConfig, read_provenance

    config = ProvenanceConfig(trust_pem=trust_pem)
    kinds = {"plain": [strip(v["exif"]) for v in variants], **{k: [v[k] for v in variants] for k in SIGNALS}}
    read_provenance(variants[0]["c2pa"], "JPEG", config)  # the C2PA SDK's one-time setup
    out = {}
    for kind, files in kinds.items():
        times = []
        for data in files:
            fmt = "PNG" if data[:4] == b"\x89PNG" else "JPEG"
            for _ in range(repeat):
                t0 = time.perf_counter()
                read_provenance(data, fmt, config)
                times.append((time.perf_counter() - t0) * 1000)
        out[kind] = round(statistics.median(times), 3)
    return out


def provenance_survival(images: list[Image.Image], n: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Per transformation and kind of signal: how many copies still carry it; and the reader's cost."""
    from misinfo.provenance_samples import make_test_ca

    ca = make_test_ca("robustness bench")
    variants = [signal_variants(im, ca) for im in images[:n]]
    out: dict[str, Any] = {}
    for name, fn in {"original": lambda d: d, **TRANSFORMS}.items():
        row: dict[str, dict[str, int]] = {}
        for kind in SIGNALS:
            states = [signal_state(kind, fn(v[kind]), ca.root_pem) for v in variants]
            row[kind] = {
                "of": len(states),
                **{s: states.count(s) for s in ("kept", "tampered") if s in states},
            }
            row[kind].setdefault("kept", 0)
        out[name] = row
    return out, reader_ms(variants, ca.root_pem)


# --- the model -------------------------------------------------------------------------------------
def _fake(p: list[float], classes: list[str]) -> float:
    return sum(v for c, v in zip(classes, p, strict=True) if c in ("manipulated", "synthesized"))


def measure_model(
    model: str, files: list[bytes], labels: list[str] | None, batch: int, device: str
) -> dict[str, Any]:
    from detector.answer import CLASSES
    from detector.model import Detector
    from detector.options import LoadOptions
    from ingest.etl import decode_rgb

    det = Detector.load(model, LoadOptions(device=device))
    classes = list(CLASSES)

    def judge(blobs: list[bytes]) -> list[tuple[str, list[float]]]:
        out = []
        for i in range(0, len(blobs), batch):
            images = [decode_rgb(b, 100_000_000)[1] for b in blobs[i : i + batch]]
            for row in det.class_probabilities(images).tolist():
                label, _ = det.thresholds.decide(dict(zip(classes, row, strict=True)))
                out.append((label, row))
        return out

    def accuracy(judged: list[tuple[str, list[float]]]) -> float | None:
        if labels is None:
            return None
        return round(sum(j[0] == lb for j, lb in zip(judged, labels, strict=True)) / len(labels), 4)

    base = judge(files)
    rows: dict[str, Any] = {}
    for name, fn in TRANSFORMS.items():
        _say(f"{Path(model).name}: {name}")
        judged = judge([fn(f) for f in files])
        shifts = sorted(
            abs(_fake(b[1], classes) - _fake(j[1], classes)) for b, j in zip(base, judged, strict=True)
        )
        rows[name] = {
            "flip_rate": round(sum(b[0] != j[0] for b, j in zip(base, judged, strict=True)) / len(files), 4),
            "fake_score_shift_mean": round(statistics.fmean(shifts), 4),
            "fake_score_shift_p90": round(shifts[int(0.9 * (len(shifts) - 1))], 4),
            "accuracy": accuracy(judged),
        }
    counts = {c: sum(b[0] == c for b in base) for c in (*classes, "uncertain")}
    return {"base": {"labels": counts, "accuracy": accuracy(base)}, "transforms": rows}


# --- the image set ---------------------------------------------------------------------------------
def load_set(
    images: str | None, records: str | None, generate: int, seed: int
) -> tuple[list[bytes], list[str] | None]:
    """Image files as bytes, and their labels when known."""
    if records:
        from trainer.data import read_records

        examples = read_records(Path(records))
        return [Path(ex.image).read_bytes() for ex in examples], [ex.label for ex in examples]
    if images:
        paths = sorted(
            p for p in Path(images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
        )
        return [p.read_bytes() for p in paths], None
    import numpy as np

    from misinfo.bench.learning import forensic_image

    rng = np.random.default_rng(seed)
    files, labels = [], []
    for i in range(generate):
        manipulated = i % 2 == 1
        buf = io.BytesIO()
        forensic_image(i, manipulated, rng).save(buf, "PNG")
        files.append(buf.getvalue())
        labels.append("manipulated" if manipulated else "authentic")
    return files, labels


@click.command("robustness")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="checkpoint directory (repeat for several); default: the tiny random checkpoint built here",
)
@click.option("--images", default=None, help="a folder of images (no labels)")
@click.option(
    "--records",
    default=None,
    help="a conversation-record JSON (images and labels), e.g. bench learning's val.json",
)
@click.option("--generate", default=64, show_default=True, help="else: this many generated forensic images")
@click.option(
    "--provenance-images", default=8, show_default=True, help="images copied with each kind of signal"
)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True)
def bench_robustness(
    models: tuple[str, ...],
    images: str | None,
    records: str | None,
    generate: int,
    provenance_images: int,
    batch_size: int,
    device: str,
    seed: int,
) -> None:
    """Re-share each image (JPEG 95/75/60, downscale, crop, screenshot, strip): verdict flips, score
    shift and surviving provenance signals per transformation; one JSON line per model."""
    import torch

    started = time.perf_counter()
    files, labels = load_set(images, records, generate, seed)
    if not files:
        raise click.UsageError("no images: --images names an empty folder")
    _say(f"{len(files)} images; provenance signals on {min(provenance_images, len(files))} of them")
    survival, read_ms = provenance_survival([_open(f) for f in files], provenance_images)
    with tempfile.TemporaryDirectory(prefix="misinfo-robust-") as tmp:
        if not models:
            from detector.tiny import build_tiny_checkpoint

            models = (str(build_tiny_checkpoint(Path(tmp) / "tiny", seed=seed)),)
        for model in models:
            t0 = time.perf_counter()
            figures = measure_model(model, files, labels, batch_size, device)
            click.echo(
                json.dumps(
                    {
                        "bench": "robustness",
                        "model": model,
                        "images": len(files),
                        **figures,
                        "provenance_signals": survival,
                        "provenance_reader_ms": read_ms,
                        "config": {
                            "source": "records" if records else "folder" if images else "generated",
                            "device": device,
                            "threads": torch.get_num_threads(),
                            "machine": platform.machine(),
                        },
                        "model_seconds": round(time.perf_counter() - t0, 1),
                        "wall_seconds": round(time.perf_counter() - started, 1),
                    }
                )
            )
