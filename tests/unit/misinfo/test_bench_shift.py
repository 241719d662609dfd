"""The shift benchmark's image families: one JPEG format for all, the trace each family carries, and
a trivial-cue baseline that cannot tell the new family and the generator from photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from misinfo.bench import families
from misinfo.bench.shift import trivial_cue_f1


def _pattern_strength(data: bytes, pattern: str) -> float:
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
    return float((grey * families.PATTERNS[pattern][:, :, 0]).mean())


def test_every_family_is_a_112px_jpeg_of_the_same_quality_range_with_its_own_trace():
    rng = np.random.default_rng(0)
    strength = {}
    for fam in families.FAMILIES:
        files = [families.make(fam, rng) for _ in range(12)]
        for data in files:
            with Image.open(io.BytesIO(data)) as im:
                assert im.format == "JPEG" and im.size == (112, 112)
            assert families.QUALITY[0] <= families.jpeg_quality(data) <= families.QUALITY[1]
        strength[fam] = {p: np.mean([_pattern_strength(d, p) for d in files]) for p in families.PATTERNS}
    assert strength["authentic"]["rows"] > 2.0  # the camera's rows everywhere
    assert abs(strength["A"]["rows"]) < strength["authentic"]["rows"] - 1.0  # a part runs in the other phase
    assert strength["B"]["columns"] > 0.8 and strength["B"]["rows"] < strength["authentic"]["rows"]
    assert strength["synthesized"]["checker"] > 2.0 and abs(strength["synthesized"]["rows"]) < 0.5


def test_jpeg_quality_is_read_back_from_the_tables():
    img = Image.new("RGB", (32, 32), (90, 120, 200))
    for q in (60, 80, 95):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        assert families.jpeg_quality(buf.getvalue()) == q
    png = io.BytesIO()
    img.save(png, "PNG")
    assert families.jpeg_quality(png.getvalue()) == 0.0


def test_size_quality_and_dimensions_do_not_separate_the_new_family_and_the_generator(tmp_path):
    rng = np.random.default_rng(1)
    train = families.write(tmp_path / "train", ["authentic", "B", "synthesized"], 180, rng)
    test = families.write(tmp_path / "test", ["authentic", "B", "synthesized"], 120, rng)
    scores = trivial_cue_f1([(p, c) for p, c, _ in train], [(p, c) for p, c, _ in test])
    assert set(scores) == {"knn", "naive_bayes"}
    assert max(scores.values()) <= 0.6, scores
