"""The paper's triplet network: a two-layer MLP mapping z-scored features to an embedding.

The configuration is a dataclass that the bundle's manifest stores, so a saved
model is rebuilt as `TripletMLP(ModelConfig(**manifest["model"]))`.

    >>> model = TripletMLP(ModelConfig())
    >>> model(torch.zeros(4, 518)).shape
    torch.Size([4, 518])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.features import N_FEATURES

# Rows per forward pass when embedding a catalogue: bounds activation memory.
_EMBED_BATCH = 8192


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = N_FEATURES  # input width: FMA's 518 features
    width: int = N_FEATURES  # both layers are 518 wide in the paper


class TripletMLP(nn.Module):
    """Linear -> sigmoid -> linear -> tanh, as in the paper."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.n_features, config.width),
            nn.Sigmoid(),
            nn.Linear(config.width, config.width),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_features) z-scored features -> (batch, width) embeddings."""
        return self.net(x)


def embed(model: TripletMLP, x: np.ndarray) -> np.ndarray:
    """Run the network on (n, n_features) z-scored inputs in batches, without gradients."""
    model.eval()
    out = np.empty((len(x), model.config.width), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(x), _EMBED_BATCH):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + _EMBED_BATCH]))
            out[start : start + len(chunk)] = model(chunk).numpy()
    return out
