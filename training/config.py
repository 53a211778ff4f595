"""Run configurations: every field a training run or a linear fit takes, with its default.

The CLI and TOML run files override fields by name; the resolved configuration is
stored whole in the bundle's manifest.

>>> TrainConfig(triplets="batch-hard", validation_fraction=0.1, patience=3)
>>> LinearTrainConfig(method="lda", embedding_dim=64)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model module imports torch: read only where a model is built
    from training.model import ModelConfig

# The paper's fresh triplets (training/sampling.py) and online miners (training/mining.py).
TRIPLET_KINDS: tuple[str, ...] = ("random", "genre")
MINER_KINDS: tuple[str, ...] = ("semihard", "batch-hard")

TRAINING_KINDS: tuple[str, ...] = TRIPLET_KINDS + MINER_KINDS
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's setting where it gives one."""

    # "random" or "genre": the paper's fresh triplets; "semihard" or "batch-hard":
    # triplets mined online from P x K batches (not in the paper).
    triplets: str = "random"
    epochs: int = 200  # paper: 200 epochs
    triplets_per_epoch: int = 512  # paper: 512 fresh triplets per epoch
    # Not in the paper. Keras' defaults (which the paper's code most likely used):
    # mini-batches of 32 and Adam with learning rate 1e-3.
    batch_size: int = 32
    lr: float = 1e-3
    margin: float = 1.0  # paper: alpha = 1
    width: int = 518  # paper: both layers 518 wide
    train_fraction: float = 0.7  # paper: 70% of artists train, 30% evaluate
    seed: int = 0  # seeds the split, the sampler and the weights
    # Beyond the paper; every default leaves its protocol unchanged.
    embedding_dim: int | None = None  # output width; None: `width`
    depth: int = 2  # linear layers in the network
    dropout: float = 0.0
    l2_normalize: bool = False  # unit-length embeddings
    weight_decay: float = 0.0  # Adam's L2 penalty
    lr_schedule: str = "constant"  # or "cosine": anneal to 0 over the epochs
    artists_per_batch: int = 32  # P of a mined P x K batch
    tracks_per_artist: int = 4  # K of a mined P x K batch
    # Mined batches per epoch; None: triplets_per_epoch / batch_size, the paper's
    # number of updates per epoch.
    batches_per_epoch: int | None = None
    # Early stopping: this fraction of the training artists is held out as a validation
    # set (never evaluation artists); every `validate_every` epochs its mean AUC is
    # measured, the best model is kept, and training stops after `patience` checks
    # without improvement (0: never stops early).
    validation_fraction: float = 0.0
    validate_every: int = 10
    patience: int = 0
    train_artists: int | None = None  # use only this many training artists (size sweeps)

    def __post_init__(self) -> None:
        positive = ("epochs", "triplets_per_epoch", "batch_size", "width", "validate_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.margin >= 0:
            raise ValueError("lr must be positive and margin non-negative")
        if self.triplets not in TRAINING_KINDS:
            raise ValueError(f"triplet kind must be one of {TRAINING_KINDS}, got {self.triplets!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.weight_decay < 0 or self.patience < 0:
            raise ValueError("weight_decay and patience must not be negative")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.patience and not self.validation_fraction:
            raise ValueError("early stopping (patience) needs a validation_fraction above 0")
        self.model_config(1)  # checks depth, embedding_dim and dropout

    @property
    def mines_online(self) -> bool:
        return self.triplets in MINER_KINDS

    def model_config(self, n_features: int) -> ModelConfig:
        from training.model import ModelConfig

        return ModelConfig(
            n_features=n_features,
            width=self.width,
            embedding_dim=self.embedding_dim,
            depth=self.depth,
            dropout=self.dropout,
            l2_normalize=self.l2_normalize,
        )


LINEAR_METHODS: tuple[str, ...] = ("lda", "nca", "zscore")


@dataclass(frozen=True)
class LinearTrainConfig:
    """One linear metric fit. The split fields mean what they mean in TrainConfig."""

    method: str = "lda"  # "lda", "nca" or "zscore" (the identity)
    embedding_dim: int = 64  # output dimensions (LDA: at most n_training_artists - 1)
    shrinkage: float | None = None  # LDA covariance shrinkage in [0, 1]; None: Ledoit-Wolf
    nca_max_tracks: int = 3000  # NCA fits on at most this many training tracks
    nca_max_iter: int = 50  # NCA optimiser iterations
    train_fraction: float = 0.7
    seed: int = 0
    train_artists: int | None = None
    validation_fraction: float = 0.0  # unused by the fit; kept so splits match TrainConfig

    def __post_init__(self) -> None:
        if self.method not in LINEAR_METHODS:
            raise ValueError(f"method must be one of {LINEAR_METHODS}, got {self.method!r}")
        if self.embedding_dim < 1 or self.nca_max_tracks < 2 or self.nca_max_iter < 1:
            raise ValueError("embedding_dim, nca_max_tracks and nca_max_iter must be positive")
        if self.shrinkage is not None and not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {self.shrinkage}")
