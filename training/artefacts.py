"""Model bundles: a folder with manifest.json and safetensors files, never a pickle.

models/NAME/
  manifest.json        format version, model and training configs, feature
                       columns, data fingerprint, library versions, metrics,
                       SHA-256 of every other file
  model.safetensors    the model's weights (the MLP's, or a linear projection's;
                       manifest "architecture" says which, "mlp" when absent)
  zscore.safetensors   per-feature mean and std of the training tracks
  split.json           training and evaluation artist ids (and validation ones, if any)

>>> save_bundle(run, out_dir=Path("models/default"), data_fingerprint=cat.fingerprint)
>>> bundle = load_bundle(Path("models/default"))
>>> bundle.embed(features)  # (n, 518) raw features -> (n, embedding_dim) embeddings
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from training.data.features import FEATURE_COLUMNS
from training.data.fma import file_sha256
from training.data.split import ArtistSplit, ZScore
from training.evaluation.scoring import Scoring
from training.model import (
    Embedder,
    LinearConfig,
    LinearProjection,
    ModelConfig,
    TripletMLP,
    embed,
)

if TYPE_CHECKING:  # saving takes a run; loading needs only the model and split
    from training.runs import TrainedRun

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ZSCORE = "zscore.safetensors"
SPLIT = "split.json"
# manifest "architecture" -> the config dataclass and module it rebuilds. Manifests
# written before linear bundles existed have no such key and hold an MLP.
ARCHITECTURES: dict[str, tuple[type, type]] = {
    "mlp": (ModelConfig, TripletMLP),
    "linear": (LinearConfig, LinearProjection),
}


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent; the message says which and why."""


@dataclass
class Bundle:
    model: Embedder
    zscore: ZScore
    split: ArtistSplit
    manifest: dict[str, Any]
    manifest_sha256: str
    path: Path

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def embedding_dim(self) -> int:
        """Width of the vectors `embed` returns (what the index stores)."""
        return self.model.embedding_dim

    @property
    def scoring(self) -> Scoring:
        """The scoring the bundle was chosen with (l2 for bundles that record none)."""
        try:
            return Scoring(**self.manifest.get("scoring", {}))
        except (TypeError, ValueError) as exc:
            raise BundleError(
                f"model bundle {self.path}: the manifest's scoring is invalid: {exc}"
            ) from exc

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(n, n_features) raw features -> (n, embedding_dim) float32 embeddings."""
        return embed(self.model, self.zscore.apply(features))


def library_versions() -> dict[str, str]:
    import pandas
    import safetensors

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "safetensors": safetensors.__version__,
    }


def save_bundle(
    run: TrainedRun,
    *,
    out_dir: Path,
    data_fingerprint: str,
    metrics: dict[str, Any] | None = None,
    name: str | None = None,
    scoring: Scoring | None = None,
    selection: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle into a temporary folder, then move it into place whole.

    selection: what was chosen for this bundle and why (e.g. by `musicsim library`).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        _write_files(run, tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name or out_dir.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "architecture": _architecture(run.model),
            "model": dataclasses.asdict(run.model.config),
            "training": _training_record(run),
            "losses": run.losses,
            "n_genre_fallbacks": run.n_genre_fallbacks,
            "validation": {"checks": run.validation, "best_epoch": run.best_epoch},
            "feature_columns": ["/".join(c) for c in FEATURE_COLUMNS],
            "data": {"fingerprint": data_fingerprint},
            "versions": library_versions(),
            "metrics": metrics or {},
            "scoring": (scoring or Scoring()).as_dict(),
            **({"selection": selection} if selection is not None else {}),
            "files": {f: file_sha256(tmp / f) for f in (WEIGHTS, ZSCORE, SPLIT)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _architecture(model: Embedder) -> str:
    return "linear" if isinstance(model, LinearProjection) else "mlp"


def _training_record(run: TrainedRun) -> dict[str, Any]:
    record = dataclasses.asdict(run.config)
    if isinstance(run.model, TripletMLP):
        record["optimizer"] = "adam"
    return record


def _write_files(run: TrainedRun, folder: Path) -> None:
    state = {k: v.detach().contiguous() for k, v in run.model.state_dict().items()}
    save_torch(state, str(folder / WEIGHTS))
    save_numpy({"mean": run.zscore.mean, "std": run.zscore.std}, str(folder / ZSCORE))
    split = {"train": run.split.train.tolist(), "eval": run.split.eval.tolist()}
    if len(run.split.validation):
        split["validation"] = run.split.validation.tolist()
    (folder / SPLIT).write_text(json.dumps(split) + "\n")


def load_bundle(path: Path) -> Bundle:
    """Load and check a bundle; any inconsistency raises BundleError naming the problem."""
    path = Path(path)
    manifest, manifest_sha256 = _read_manifest(path)
    _check_hashes(path, manifest)
    config_type, model_type = _architecture_of(path, manifest)
    config = _model_config(path, manifest, config_type)
    model = _load_model(path, model_type(config))
    zscore = _load_zscore(path, config.n_features)
    split = _load_split(path)
    bundle = Bundle(model, zscore, split, manifest, manifest_sha256, path)
    bundle.scoring  # noqa: B018 (a bad scoring is refused here, not at first use)
    _probe(bundle)
    return bundle


def _probe(bundle: Bundle) -> None:
    """Hashes prove the files are the ones written, not that they compute anything:
    a bundle saved with NaN weights matches its hashes. Refuse non-finite weights,
    and a probe batch (the training mean, and a few standard deviations either
    side) whose embeddings are not finite."""
    path = bundle.path
    for name, tensor in bundle.model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise BundleError(f"model bundle {path}: weight {name} holds NaN or infinite values")
    mean, std = bundle.zscore.mean, bundle.zscore.std
    probe = np.stack([mean + k * std for k in (-3.0, -1.0, 0.0, 1.0, 3.0)]).astype(np.float32)
    if not np.isfinite(bundle.embed(probe)).all():
        raise BundleError(
            f"model bundle {path}: its embeddings of a probe batch are not finite; "
            "the model cannot be served"
        )


def _read_manifest(path: Path) -> tuple[dict[str, Any], str]:
    file = path / MANIFEST
    if path.exists() and not path.is_dir():
        raise BundleError(f"model bundle {path}: not a folder (a bundle is a folder of files)")
    if file.exists() and not file.is_file():
        raise BundleError(f"model bundle {path}: {MANIFEST} is not a regular file")
    if not file.is_file():
        raise BundleError(f"model bundle {path}: {MANIFEST} not found (train one first)")
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise BundleError(f"model bundle {path}: cannot read {MANIFEST} ({exc})") from exc
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"model bundle {path}: {MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {path}: unsupported format_version "
            f"{manifest.get('format_version') if isinstance(manifest, dict) else None!r}"
        )
    columns = manifest.get("feature_columns")
    if columns != ["/".join(c) for c in FEATURE_COLUMNS]:
        raise BundleError(f"model bundle {path}: feature columns differ from FMA's 518")
    return manifest, hashlib.sha256(raw).hexdigest()


def _check_hashes(path: Path, manifest: dict[str, Any]) -> None:
    expected = manifest.get("files")
    if not isinstance(expected, dict) or set(expected) != {WEIGHTS, ZSCORE, SPLIT}:
        raise BundleError(f"model bundle {path}: manifest lists no hashes for its files")
    for name, digest in expected.items():
        file = path / name
        if file.exists() and not file.is_file():
            raise BundleError(f"model bundle {path}: {name} is not a regular file")
        if not file.is_file():
            raise BundleError(f"model bundle {path}: {name} is missing")
        try:
            actual = file_sha256(file)
        except OSError as exc:  # e.g. not readable by the service's user
            raise BundleError(f"model bundle {path}: cannot read {name} ({exc})") from exc
        if actual != digest:
            raise BundleError(
                f"model bundle {path}: {name} does not match the SHA-256 in {MANIFEST} "
                "(corrupt, truncated or replaced)"
            )


def _architecture_of(path: Path, manifest: dict[str, Any]) -> tuple[type, type]:
    name = manifest.get("architecture", "mlp")
    if name not in ARCHITECTURES:
        raise BundleError(
            f"model bundle {path}: unknown architecture {name!r} (known: {sorted(ARCHITECTURES)})"
        )
    return ARCHITECTURES[name]


def _model_config(path: Path, manifest: dict[str, Any], config_type: type) -> Any:
    try:
        return config_type(**manifest["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"model bundle {path}: bad model configuration ({exc})") from exc


def _load_model(path: Path, model: Embedder) -> Embedder:
    try:
        state = load_torch(str(path / WEIGHTS))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise BundleError(f"model bundle {path}: weights do not fit the model ({exc})") from exc
    model.eval()
    return model


def _load_zscore(path: Path, n_features: int) -> ZScore:
    try:
        arrays = load_numpy(str(path / ZSCORE))
        mean, std = arrays["mean"], arrays["std"]
    except (SafetensorError, KeyError, OSError) as exc:
        raise BundleError(f"model bundle {path}: z-score statistics unreadable ({exc})") from exc
    if mean.shape != (n_features,) or std.shape != (n_features,):
        raise BundleError(
            f"model bundle {path}: z-score statistics have shape {mean.shape}/{std.shape}, "
            f"the model takes {n_features} features"
        )
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise BundleError(f"model bundle {path}: z-score statistics are not finite and positive")
    return ZScore(mean=mean.astype(np.float32), std=std.astype(np.float32))


def _load_split(path: Path) -> ArtistSplit:
    try:
        split = json.loads((path / SPLIT).read_text())
        train = np.asarray(split["train"], dtype=np.int64)
        evaluation = np.asarray(split["eval"], dtype=np.int64)
        validation = np.asarray(split.get("validation", []), dtype=np.int64)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"model bundle {path}: {SPLIT} unreadable ({exc})") from exc
    if np.intersect1d(train, evaluation).size or np.intersect1d(validation, evaluation).size:
        raise BundleError(f"model bundle {path}: training and evaluation artists overlap")
    return ArtistSplit(train=train, eval=evaluation, validation=validation)
