"""Several configurations trained and scored over the same seeds, splits and queries.

A configuration is a TOML file: `name`, `method` ("triplet", the default, "lda"
or "nca") and any field of TrainConfig (triplet) or LinearTrainConfig (lda, nca):

    name = "batch-hard"
    triplets = "batch-hard"
    l2_normalize = true

For each seed the paper's split is drawn once (`train_fraction`, seed), so every
configuration is scored on the same evaluation artists and queries; `seed` in a
file is ignored. Optionally each run is repeated with fewer training artists
(same evaluation artists) to sweep the catalogue size.

>>> specs = [load_run_spec(Path("configs/paper-random.toml")), ...]
>>> result = compare_runs(catalogue, specs, seeds=[0, 1, 2], train_artists=[None])
>>> result.summary()
"""

from __future__ import annotations

import dataclasses
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.config import LINEAR_METHODS, LinearTrainConfig, TrainConfig
from training.data.fma import Catalogue
from training.evaluation.scoring import Scoring
from training.evaluation.spaces import baseline_spaces, evaluate_spaces, model_space
from training.linear import fit_linear_on_catalogue
from training.runs import TrainedRun
from training.train import train_on_catalogue

METRICS: tuple[str, ...] = ("mean_auc", "mean_average_precision", "recall_at_10", "ndcg_at_10")
HUBNESS: tuple[str, ...] = ("hubness_skewness", "antihub_share", "max_k_occurrence", "coverage")
# Their column headings, in that order, wherever a summary is shown (means over seeds).
HUBNESS_LABELS = ("k-occ. skewness", "antihubs", "largest N10", "coverage")
METHODS: tuple[str, ...] = ("triplet", *LINEAR_METHODS)


@dataclass(frozen=True)
class RunSpec:
    name: str
    config: TrainConfig | LinearTrainConfig


def load_run_spec(path: Path) -> RunSpec:
    """Read one configuration file; unknown or invalid fields raise ValueError naming them."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read configuration {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"configuration {path} is not valid TOML ({exc})") from exc
    name = str(raw.pop("name", path.stem))
    method = raw.pop("method", "triplet")
    if method not in METHODS:
        raise ValueError(f"configuration {path}: method must be one of {METHODS}, got {method!r}")
    if method == "triplet":
        config_type: type = TrainConfig
    else:
        config_type, raw = LinearTrainConfig, {**raw, "method": method}
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"configuration {path}: unknown field(s) {unknown} for method {method!r}")
    try:
        return RunSpec(name, config_type(**raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"configuration {path}: {exc}") from exc


def fit_run(catalogue: Catalogue, config: TrainConfig | LinearTrainConfig) -> TrainedRun:
    """Train a triplet network or fit a linear metric, whichever the config describes."""
    if isinstance(config, LinearTrainConfig):
        return fit_linear_on_catalogue(catalogue, config)
    return train_on_catalogue(catalogue, config)


@dataclass
class Comparison:
    """One record per (configuration, scoring, training-artist count, seed)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and sample standard deviation over seeds of each metric, per group."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for record in self.records:
            key = (record["name"], record.get("scoring", "l2"), str(record["train_artists"]))
            groups.setdefault(key, []).append(record)
        out = []
        for (name, scoring, _), records in groups.items():
            row: dict[str, Any] = {
                "name": name,
                "scoring": scoring,
                "train_artists": records[0]["train_artists"],
                "n_train_artists": records[0]["n_train_artists"],
                "n_seeds": len(records),
            }
            for metric in (*METRICS, *HUBNESS, "seconds"):
                if metric not in records[0]:
                    continue
                values = np.array([r[metric] for r in records], dtype=np.float64)
                row[f"{metric}_mean"] = float(values.mean())
                row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out.append(row)
        return out

    def as_json(self) -> dict[str, Any]:
        return {"records": self.records, "summary": self.summary()}


RunCallback = Callable[[dict[str, Any]], None]


def compare_runs(
    catalogue: Catalogue,
    specs: list[RunSpec],
    *,
    seeds: list[int],
    train_artists: list[int | None],
    every_track: bool = False,
    baselines: bool = True,
    on_run: RunCallback | None = None,
    scorings: Sequence[Scoring] = (Scoring(),),
) -> Comparison:
    """Fit every spec for every seed and training-artist count; score all on shared queries.

    train_artists: None means all training artists. With `baselines`, raw and z-scored
    features are scored too (z-score statistics of that seed's training tracks).
    """
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("configuration names must be distinct")
    if len({spec.config.train_fraction for spec in specs}) > 1:
        raise ValueError("configurations must share train_fraction to share evaluation artists")
    comparison = Comparison()
    for seed in seeds:
        for size in train_artists:
            for i, spec in enumerate(specs):
                config = dataclasses.replace(spec.config, seed=seed, train_artists=size)
                started = time.perf_counter()
                run = fit_run(catalogue, config)
                seconds = time.perf_counter() - started
                spaces = {spec.name: model_space(run.model, run.zscore)}
                if baselines and i == 0:
                    spaces = {**baseline_spaces(run.zscore), **spaces}
                mask = run.split.eval_mask(catalogue.artist_ids)
                rows = evaluate_spaces(
                    catalogue.features[mask],
                    catalogue.artist_ids[mask],
                    spaces=spaces,
                    seed=seed,
                    every_track=every_track,
                    scorings=scorings,
                )
                for row in rows:
                    record = {
                        "name": row.space,
                        "scoring": row.scoring,
                        "seed": seed,
                        "train_artists": size or "all",
                        "n_train_artists": len(run.split.train),
                        "seconds": seconds if row.space == spec.name else 0.0,
                        "n_queries": row.n_queries,
                        "n_songs": row.n_songs,
                        "best_epoch": run.best_epoch if row.space == spec.name else None,
                        **{metric: getattr(row, metric) for metric in (*METRICS, *HUBNESS)},
                    }
                    comparison.records.append(record)
                    if on_run is not None:
                        on_run(record)
    return comparison


def summary_markdown(summary: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table: mean ± sample std over seeds of each metric."""
    header = (
        "| configuration | scoring | training artists | seeds | mean AUC | mAP | recall@10 "
        f"| nDCG@10 | {' | '.join(HUBNESS_LABELS)} |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        cells = [row["name"], row.get("scoring", "l2")]
        cells += [f"{row['train_artists']} ({row['n_train_artists']})", str(row["n_seeds"])]
        cells += [f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" for m in METRICS]
        cells += [f"{row[f'{m}_mean']:.2f}" if f"{m}_mean" in row else "-" for m in HUBNESS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
