"""Data augmentation for fine-tuning and distillation: fresh random copies of the training images each epoch.

A network trained with flips and crops and then fine-tuned without them overfits its small
fine-tuning set: the fine-tuning itself costs accuracy, and a compression technique is blamed for
it. `FinetuneSettings(augment="flip-crop")` makes fine-tuning see what training saw.
Augmentations are registered by name; each takes a batch (NHWC) and a numpy Generator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from advisor.errors import SpecError


def crop(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crops of the image reflect-padded by `pad` pixels (alone: for images whose mirror
    image means something else, such as digits)."""
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, len(x)))
    h, w = x.shape[1:3]
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])


def flip_crop(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random horizontal flips, then random crops (`crop`)."""
    flip = rng.random(len(x)) < 0.5
    return crop(np.where(flip[:, None, None, None], x[:, :, ::-1, :], x), rng, pad)


#: Augmentations by name: batch (N, H, W, C) and a Generator in, a batch of the same shape out.
AUGMENTATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "flip-crop": flip_crop,
    "crop": crop,
}


def augmentation(name: str) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The augmentation registered as `name`.

    Raises:
        SpecError: no augmentation has that name.
    """
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise SpecError(f"unknown augmentation '{name}'; known: {', '.join(sorted(AUGMENTATIONS))}") from None


def check_images(x: np.ndarray, name: str) -> None:
    """Refuse an image augmentation on data that is not a batch of images (N, H, W, C).

    Raises:
        SpecError: `x` is not four-dimensional.
    """
    if np.ndim(x) != 4:
        raise SpecError(f"augmentation '{name}' needs images shaped (N, H, W, C); the data is shaped "
                        f"{tuple(np.shape(x))}")
