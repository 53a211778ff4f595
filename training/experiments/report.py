"""The report of a run: PNG figures and a Markdown page that embeds them beside Table 1.

`musicsim train` and `musicsim paper` write it into `OUT/report/`:

  report.md   the table of mean AUCs (with the paper's figures) and the figures
  loss.png    mean triplet loss per epoch of each trained model
  roc.png     ROC curve of each space (raw, zscore, each model), averaged over queries
  map.png     evaluation songs in each learned space (PCA to 2-D), coloured by
              top-level genre, the evaluation artists with the most songs highlighted

    >>> write_run_report(catalogue, runs={"model": run}, rows=rows, seed=0,
    ...                  out_dir=Path("models/default/report"), title="models/default")

Figures are drawn on matplotlib `Figure` objects with the Agg canvas: no display,
no pyplot state shared between calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.fma import Catalogue
from training.evaluation.maps import principal_plane
from training.evaluation.metrics import draw_queries
from training.evaluation.roc import AveragedROC, averaged_roc
from training.evaluation.spaces import Space, SpaceScore, baseline_spaces, model_space
from training.extras import require
from training.runs import TrainedRun

# The train extra: this module is imported only where a report is written.
colormaps = require("matplotlib", extra="train").colormaps
Figure = require("matplotlib.figure", extra="train").Figure
MaxNLocator = require("matplotlib.ticker", extra="train").MaxNLocator

REPORT_DIR = "report"
REPORT_FILE = "report.md"
LOSS_FIGURE = "loss.png"
ROC_FIGURE = "roc.png"
MAP_FIGURE = "map.png"
N_HIGHLIGHTED = 4  # artists marked on the map: enough to compare, few enough to see
_DPI = 120
_NO_GENRE = "(no top-level genre)"


@dataclass(frozen=True)
class SongMap:
    """Evaluation songs placed in 2-D for one learned space."""

    xy: np.ndarray  # (n_songs, 2) first two principal components of the embeddings
    genres: np.ndarray  # (n_songs,) top-level genre title, or _NO_GENRE
    artist_ids: np.ndarray  # (n_songs,)
    highlighted: dict[int, str]  # artist id -> name, the artists marked on the map


def write_run_report(
    catalogue: Catalogue,
    *,
    runs: dict[str, TrainedRun],
    rows: list[SpaceScore],
    seed: int,
    out_dir: Path,
    title: str,
    paper: dict[str, float] | None = None,
) -> Path:
    """Compute curves and maps for the runs' evaluation songs; write figures and report.md.

    runs: space name (as in rows) -> a run; all runs share the first run's split,
    as in `reproduce_table1`. rows: the scores printed beside this report, drawn
    with the same seed, so the ROC curves come from the very same queries.
    """
    first = next(iter(runs.values()))
    mask = first.split.eval_mask(catalogue.artist_ids)
    features, artist_ids = catalogue.features[mask], catalogue.artist_ids[mask]
    spaces: dict[str, Space] = baseline_spaces(first.zscore)
    for name, run in runs.items():
        spaces[name] = model_space(run.model, run.zscore)
    queries = draw_queries(artist_ids, rng=np.random.default_rng(seed))
    curves = {
        name: averaged_roc(space(features), artist_ids, queries) for name, space in spaces.items()
    }
    tracks = catalogue.tracks[mask]
    maps = {
        name: song_map(
            spaces[name](features),
            tracks["genre"].to_numpy(),
            artist_ids,
            names=tracks["artist_name"].to_numpy(),
        )
        for name in runs
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_losses({name: run.losses for name, run in runs.items()}, out_dir / LOSS_FIGURE)
    plot_rocs(curves, out_dir / ROC_FIGURE)
    plot_maps(maps, out_dir / MAP_FIGURE)
    text = report_markdown(
        title=title, rows=rows, curves=curves, maps=maps, paper=paper or {}, runs=runs
    )
    path = out_dir / REPORT_FILE
    path.write_text(text)
    return path


def song_map(
    embeddings: np.ndarray, genres: np.ndarray, artist_ids: np.ndarray, *, names: np.ndarray
) -> SongMap:
    """PCA of the embeddings; the N_HIGHLIGHTED artists with most songs (ties: lower id)."""
    ids, counts = np.unique(artist_ids, return_counts=True)
    top = ids[np.lexsort((ids, -counts))][:N_HIGHLIGHTED]
    highlighted = {int(a): str(names[np.flatnonzero(artist_ids == a)[0]]) for a in top}
    labels = np.array([g if isinstance(g, str) and g else _NO_GENRE for g in genres], dtype=object)
    return SongMap(principal_plane(embeddings), labels, np.asarray(artist_ids), highlighted)


def plot_losses(losses: dict[str, list[float]], path: Path) -> None:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for name, values in losses.items():
        ax.plot(
            np.arange(1, len(values) + 1),
            values,
            label=name,
            marker="." if len(values) < 30 else None,
        )
    ax.set(xlabel="epoch", ylabel="mean triplet loss", title="Training loss per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=_DPI)


def plot_rocs(curves: dict[str, AveragedROC], path: Path) -> None:
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance (AUC 0.5)")
    for name, curve in curves.items():
        ax.plot(curve.fpr, curve.tpr, label=f"{name} (area {curve.area:.3f})")
    n_queries = max(curve.n_queries for curve in curves.values())
    ax.set(
        xlabel="false-positive rate (other artists' songs)",
        ylabel="true-positive rate (the query artist's songs)",
        title=f"Artist retrieval ROC, averaged over {n_queries} queries",
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=_DPI)


def plot_maps(maps: dict[str, SongMap], path: Path) -> None:
    genres = sorted({g for m in maps.values() for g in m.genres if g != _NO_GENRE})
    palette = _genre_colours(genres)
    fig = Figure(figsize=(6.5 * len(maps) + 2.5, 6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(maps)))
    for ax, (name, song_map) in zip(axes, maps.items(), strict=True):
        _draw_map(ax, song_map, palette)
        ax.set(
            title=f"{name}: evaluation songs, PCA of the learned space",
            xlabel="PC 1",
            ylabel="PC 2",
        )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", markerscale=2)
    fig.savefig(path, dpi=_DPI)


def _genre_colours(genres: list[str]) -> dict[str, tuple]:
    cmap = colormaps["tab20"]
    colours = {genre: cmap(i % cmap.N) for i, genre in enumerate(genres)}
    colours[_NO_GENRE] = (0.8, 0.8, 0.8, 1.0)
    return colours


def _draw_map(ax, song_map: SongMap, palette: dict[str, tuple]) -> None:
    # Songs without a genre first, so coloured songs are drawn over them.
    for genre in [_NO_GENRE, *sorted(set(song_map.genres) - {_NO_GENRE})]:
        at = song_map.genres == genre
        if at.any():
            ax.scatter(*song_map.xy[at].T, s=4, color=palette[genre], label=genre, linewidths=0)
    for marker, (artist, name) in zip("osD^v", song_map.highlighted.items(), strict=False):
        at = song_map.artist_ids == artist
        ax.scatter(
            *song_map.xy[at].T,
            s=40,
            marker=marker,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            label=f"artist: {name}",
        )


def report_markdown(
    *,
    title: str,
    rows: list[SpaceScore],
    curves: dict[str, AveragedROC],
    maps: dict[str, SongMap],
    paper: dict[str, float],
    runs: dict[str, TrainedRun],
) -> str:
    n_songs, n_queries = rows[0].n_songs, max(r.n_queries for r in rows)
    lines = [
        f"# musicsim report: {title}",
        "",
        f"Artist retrieval on {n_songs:,} evaluation songs, {n_queries:,} queries (one random "
        "song per evaluation artist ranks all the others by L2 distance; the artist's other "
        "songs are the relevant ones).",
        "",
        "## Table 1: mean AUC",
        "",
        "| space | mean AUC | area under the averaged ROC | queries | paper (full FMA) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        reference = f"{paper[row.space]:.3f}" if row.space in paper else ""
        area = f"{curves[row.space].area:.3f}" if row.space in curves else ""
        lines.append(
            f"| {row.space} | {row.mean_auc:.3f} | {area} | {row.n_queries:,} | {reference} |"
        )
    lines += [
        "",
        "The area under each averaged curve is the mean AUC computed another way (vertical "
        "averaging on a grid of 1,001 false-positive rates): the two agree up to the grid's "
        "error of at most 0.0005.",
        "",
        "## Training loss",
        "",
        f"![Mean triplet loss per epoch]({LOSS_FIGURE})",
        "",
    ]
    for name, run in runs.items():
        config = run.config
        lines.append(
            f"- {name}: {config.triplets} triplets, {config.epochs} epochs of "
            f"{config.triplets_per_epoch} triplets, loss {run.losses[0]:.4f} in the first "
            f"epoch, {run.losses[-1]:.4f} in the last"
        )
    lines += [
        "",
        "## ROC curves",
        "",
        f"![ROC curves averaged over queries]({ROC_FIGURE})",
        "",
        "## The learned space",
        "",
        f"![Evaluation songs in the learned space]({MAP_FIGURE})",
        "",
        "Each point is an evaluation song, placed by the first two principal components of "
        "its embedding and coloured by its top-level genre. Outlined in black: the songs of "
        "the evaluation artists with the most songs:",
        "",
    ]
    for name, song_map in maps.items():
        artists = ", ".join(
            f"{artist_name} (id {a})" for a, artist_name in song_map.highlighted.items()
        )
        lines.append(f"- {name}: {artists}")
    return "\n".join(lines) + "\n"
