"""Augmentations for fine-tuning: shapes kept, pixels only moved, bad names and data refused."""

import numpy as np
import pytest

from advisor.errors import SpecError
from measure.augment import AUGMENTATIONS, augmentation, check_images, crop, flip_crop


def _images(n=6, h=8, w=8, c=3):
    return np.random.default_rng(0).uniform(0, 1, (n, h, w, c)).astype("float32")


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_augmentation_keeps_shape_and_dtype(name):
    x = _images()
    out = augmentation(name)(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.array_equal(out, x)  # something moved


def test_flip_without_crop_gives_the_image_or_its_mirror():
    x = _images(n=32)
    out = flip_crop(x, np.random.default_rng(2), pad=0)
    same = [np.array_equal(o, i) for o, i in zip(out, x)]
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 0 < sum(mirrored) < len(x)  # both happen


def test_crop_never_mirrors_and_keeps_the_centre_pixels():
    x = _images(n=16, h=12, w=12)
    out = crop(x, np.random.default_rng(3), pad=2)
    # a shift of at most 2 pixels: the centre 8x8 of each input appears in its output
    for o, i in zip(out, x):
        centre = i[2:10, 2:10]
        found = any(np.array_equal(o[dy:dy + 8, dx:dx + 8], centre) for dy in range(5) for dx in range(5))
        assert found


def test_same_seed_same_copies():
    x = _images()
    a = flip_crop(x, np.random.default_rng(7))
    b = flip_crop(x, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_unknown_augmentation_and_non_images_are_refused():
    with pytest.raises(SpecError, match="unknown augmentation 'blur'"):
        augmentation("blur")
    with pytest.raises(SpecError, match=r"needs images shaped \(N, H, W, C\)"):
        check_images(np.zeros((4, 20)), "flip-crop")
