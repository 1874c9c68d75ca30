"""The demo's data: scikit-learn's handwritten digits (1,797 8×8 images, shipped, no download).

The split and the label noise depend only on the seed, so every process that asks for the
same seed gets the same tensors (the end-to-end test re-evaluates a downloaded snapshot on
exactly the validation set the demo used).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

NUM_CLASSES = 10
PIXEL_MAX = 16.0
"""The digits' pixel values are integers in [0, 16]."""


@dataclass(frozen=True)
class DigitsSplit:
    """Train and validation tensors.

    Attributes:
        train_x: (N_train, 1, 8, 8) float32 in [0, 1].
        train_y: (N_train,) int64 labels, with ``label_noise`` of them replaced at random.
        val_x: (N_val, 1, 8, 8) float32 in [0, 1].
        val_y: (N_val,) int64 clean labels.
        noisy: Number of training labels that were changed by the label noise.
    """

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    noisy: int


def load_split(seed: int, *, val_fraction: float = 0.2, label_noise: float = 0.0) -> DigitsSplit:
    """Load the digits, shuffle them with ``seed`` and split off a validation set.

    Args:
        seed: Seed of the shuffle and of the label noise.
        val_fraction: Share of the 1,797 images held out for validation.
        label_noise: Share of training labels replaced by a different random class.

    Raises:
        ValueError: ``val_fraction`` or ``label_noise`` outside its range.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"Invalid val_fraction {val_fraction}: expected 0 < val_fraction < 1")
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"Invalid label_noise {label_noise}: expected 0 <= label_noise < 1")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / PIXEL_MAX
    labels = torch.tensor(digits.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    n_val = round(len(labels) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    train_y, noisy = _add_label_noise(labels[train], label_noise, generator)
    return DigitsSplit(images[train], train_y, images[val], labels[val], noisy)


def _add_label_noise(
    labels: Tensor, share: float, generator: torch.Generator
) -> tuple[Tensor, int]:
    """Replace ``share`` of the labels by a different class, chosen uniformly."""
    n_noisy = round(len(labels) * share)
    chosen = torch.randperm(len(labels), generator=generator)[:n_noisy]
    offsets = torch.randint(1, NUM_CLASSES, (n_noisy,), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + offsets) % NUM_CLASSES
    return noisy, n_noisy


def train_loader(
    split: DigitsSplit, *, batch_size: int, seed: int
) -> DataLoader[tuple[Tensor, ...]]:
    """A shuffling loader over the training set whose order depends only on ``seed``."""
    return DataLoader(
        TensorDataset(split.train_x, split.train_y),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
