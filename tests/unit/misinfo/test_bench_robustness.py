"""``misinfo bench robustness``: the re-sharing transformations do what they say to pixels and
metadata, provenance survival is counted per signal, and the CLI prints one JSON line per model."""

from __future__ import annotations

import io
import json

from click.testing import CliRunner
from PIL import Image

from misinfo.bench import robustness as rb
from misinfo.samples import scene


def _jpeg_with_metadata() -> bytes:
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    buf = io.BytesIO()
    scene(1, (80, 60)).save(buf, "JPEG", quality=92, exif=exif.tobytes(), xmp=rb.XMP_AI.encode())
    return buf.getvalue()


def test_strip_keeps_the_pixels_and_drops_every_block() -> None:
    data = _jpeg_with_metadata()
    stripped = rb.strip(data)
    assert Image.open(io.BytesIO(stripped)).tobytes() == Image.open(io.BytesIO(data)).tobytes()
    assert b"Midjourney" not in stripped and b"Iptc4xmpExt" not in stripped and len(stripped) < len(data)


def test_reencodes_keep_exif_and_xmp_and_the_screenshot_keeps_nothing() -> None:
    data = _jpeg_with_metadata()
    for name in ("jpeg60", "down50", "crop80"):
        out = rb.TRANSFORMS[name](data)
        assert b"Midjourney" in out and b"trainedAlgorithmicMedia" in out, name
    shot = rb.screenshot(data)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and b"Midjourney" not in shot
    assert Image.open(io.BytesIO(shot)).size == (100, 75)
    assert Image.open(io.BytesIO(rb.TRANSFORMS["down25"](data))).size == (20, 15)


def test_provenance_survival_counts_each_signal() -> None:
    rows, read_ms = rb.provenance_survival([scene(2, (64, 48))], 1)
    assert set(read_ms) == {"plain", *rb.SIGNALS} and all(v > 0 for v in read_ms.values())
    assert all(rows["original"][kind]["kept"] == 1 for kind in rb.SIGNALS)
    assert rows["jpeg95"]["c2pa"]["kept"] == 0  # a re-encode never carries a manifest
    assert rows["jpeg95"]["xmp"]["kept"] == 1 and rows["jpeg95"]["exif"]["kept"] == 1
    assert rows["jpeg95"]["png-text"]["kept"] == 0  # PNG text cannot live in a JPEG
    assert rows["down50"]["png-text"]["kept"] == 1  # a PNG stays a PNG
    assert all(rows[t][kind]["kept"] == 0 for t in ("strip", "screenshot") for kind in rb.SIGNALS)


def test_cli_prints_one_json_line_per_model(tiny_ckpt) -> None:
    args = [
        "--model",
        str(tiny_ckpt),
        "--model",
        str(tiny_ckpt),
        "--generate",
        "4",
        "--provenance-images",
        "1",
    ]
    out = CliRunner().invoke(rb.bench_robustness, args)
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert len(lines) == 2 and all(line["bench"] == "robustness" for line in lines)
    row = lines[0]["transforms"]["strip"]
    assert row["flip_rate"] == 0.0 and row["fake_score_shift_mean"] == 0.0  # same pixels, same verdict
    assert set(lines[0]["transforms"]) == set(rb.TRANSFORMS) and lines[0]["images"] == 4
    assert set(lines[0]["provenance_signals"]) == {"original", *rb.TRANSFORMS}
