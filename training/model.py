"""The embedding models: the paper's triplet MLP and a learned linear projection.

Each model's configuration is a dataclass that the bundle's manifest stores, so
a saved model is rebuilt as `TripletMLP(ModelConfig(**manifest["model"]))` (or
`LinearProjection(LinearConfig(...))` when the manifest's architecture is "linear").

    >>> model = TripletMLP(ModelConfig())
    >>> model(torch.zeros(4, 518)).shape
    torch.Size([4, 518])
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.data.features import N_FEATURES

# Rows per forward pass when embedding a catalogue: bounds activation memory.
_EMBED_BATCH = 8192


@dataclass(frozen=True)
class ModelConfig:
    n_features: int = N_FEATURES  # input width: FMA's 518 features
    width: int = N_FEATURES  # both layers are 518 wide in the paper
    # Beyond the paper; the defaults rebuild its network exactly (and old manifests,
    # which lack these keys, load unchanged).
    embedding_dim: int | None = None  # output width; None: `width`, as in the paper
    depth: int = 2  # linear layers: paper 2 (sigmoid hidden, tanh output)
    dropout: float = 0.0  # dropout before each linear layer but the first
    l2_normalize: bool = False  # project embeddings onto the unit sphere

    def __post_init__(self) -> None:
        if self.depth < 1 or self.width < 1 or (self.embedding_dim or 1) < 1:
            raise ValueError("depth, width and embedding_dim must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def output_dim(self) -> int:
        return self.embedding_dim or self.width


class TripletMLP(nn.Module):
    """Linear -> sigmoid -> ... -> linear -> tanh; the paper's is two layers of 518."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = [config.n_features] + [config.width] * (config.depth - 1) + [config.output_dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            # No Dropout module when dropout is 0, so parameter names match the paper's
            # network and old bundles load.
            if i > 0 and config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            layers.append(nn.Linear(n_in, n_out))
            layers.append(nn.Tanh() if i == config.depth - 1 else nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    @property
    def embedding_dim(self) -> int:
        return self.config.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_features) z-scored features -> (batch, embedding_dim) embeddings."""
        out = self.net(x)
        if self.config.l2_normalize:
            out = nn.functional.normalize(out, dim=1)
        return out


@dataclass(frozen=True)
class LinearConfig:
    n_features: int = N_FEATURES
    embedding_dim: int = 64


class LinearProjection(nn.Module):
    """x -> x W^T: a learned Mahalanobis metric (LDA, NCA) as an embedding."""

    def __init__(self, config: LinearConfig):
        super().__init__()
        self.config = config
        self.projection = nn.Linear(config.n_features, config.embedding_dim, bias=False)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_features) z-scored features -> (batch, embedding_dim)."""
        return self.projection(x)


# Anything a bundle can hold: both map z-scored features to vectors compared by L2.
Embedder = TripletMLP | LinearProjection


def embed(model: Embedder, x: np.ndarray) -> np.ndarray:
    """Run the model on (n, n_features) z-scored inputs in batches, without gradients.

    The forward pass runs in float64 and is cast to float32 at the end, so a song's
    embedding has the same bits however many rows share its batch: float32 matrix
    products round differently for one row than for many (BLAS picks other kernels
    and blockings), and a song posted alone must land at distance exactly 0 from its
    stored self. float64 differences (~1e-16) vanish in the final rounding to float32,
    except in coordinates near 0, whose float32 ulps are finer than them: those are
    first rounded to a grid of 1e-12 (`_GRID_DECIMALS`), far below any distance we rank.
    """
    wide_model = _float64_copy(model)
    out = np.empty((len(x), model.embedding_dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(x), _EMBED_BATCH):
            chunk = np.asarray(x[start : start + _EMBED_BATCH], dtype=np.float64)
            wide = wide_model(torch.from_numpy(chunk)).numpy()
            out[start : start + len(chunk)] = np.round(wide, _GRID_DECIMALS)
    return out


# Absolute grid (decimal places) of embeddings before the float32 cast: float64 rounding
# noise (~1e-16 of the terms summed) must not reach float32 bits near 0, yet the grid
# must stay below float32's resolution of coordinates near 1 (6e-8).
_GRID_DECIMALS = 12

# model -> (its parameters' identities and versions, a float64 copy of it). A served
# model never changes, so each query reuses the copy; training updates parameters in
# place, which bumps their versions and makes the next call copy afresh. A separate
# module, not parameters swapped into the model for the call: the service embeds from
# many threads at once, and a swap in one thread would be undone under another.
_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _float64_copy(model: Embedder) -> nn.Module:
    tensors = [*model.parameters(), *model.buffers()]
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = _FLOAT64_COPIES.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    wide = copy.deepcopy(model).to(torch.float64).eval()
    _FLOAT64_COPIES[model] = (key, wide)
    return wide
