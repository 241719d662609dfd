import random

from PIL import Image

from trainer.augment import Reshare, crop, jpeg, resize


def test_reshare_keeps_images_usable():
    img = Image.new("RGB", (120, 90), (10, 200, 30))
    aug = Reshare(probability=1.0)
    rng = random.Random(0)
    for _ in range(20):
        out = aug(img, rng)
        assert out.mode == "RGB" and min(out.size) >= 28 and out.size[0] <= 120 and out.size[1] <= 90


def test_each_transform():
    img = Image.new("RGB", (100, 50), (255, 0, 0))
    assert resize(img, 0.5).size == (50, 28)  # never below the 28-pixel patch grid
    assert crop(img, 0.8, random.Random(1)).size == (80, 40)
    assert jpeg(img, 40).size == (100, 50)
