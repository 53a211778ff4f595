"""Every configuration x scoring on a demo catalogue over seeds, the size sweep, and auto's choice.

Regenerates docs/comparison.md in one command (CPU only; the defaults are the whole
demo catalogue of `musicsim demo-data`, 10,000 tracks by 1,530 artists, seed 0):

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/scoring_comparison.py --seeds 10

(one BLAS thread: on a loaded machine, oversubscribed threads made it ten times slower)

The catalogue is the synthetic demo catalogue (training/data/synthetic): its
figures show the machinery works, not how the methods rank on real music.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from training.config import LinearTrainConfig, TrainConfig
from training.data.fma import load_catalogue
from training.data.synthetic import DEFAULT_ARTISTS, DEFAULT_TRACKS
from training.data.synthetic.catalogue import write_demo_catalogue
from training.evaluation.scoring import SCORINGS, Scoring
from training.experiments.compare import RunSpec, compare_runs, summary_markdown
from training.experiments.paper import evaluate_run
from training.selection import AutoConfig, chosen_scoring, refit, select_candidates


def specs(epochs: int, nca_tracks: int) -> list[RunSpec]:
    return [
        RunSpec("lda", LinearTrainConfig(method="lda")),
        RunSpec("nca", LinearTrainConfig(method="nca", nca_max_tracks=nca_tracks)),
        RunSpec("batch-hard", TrainConfig(triplets="batch-hard", epochs=epochs)),
        RunSpec("paper-random", TrainConfig(triplets="random", epochs=epochs)),
    ]


def local_scaling_gain(records: list[dict], name: str) -> str:
    """local-scaling minus l2 mean AUC for one space (all training artists), in seed sds.

    Two yardsticks: the unpaired seed sd (the larger of the two rows' sample sds over
    seeds: the issue's criterion) and the paired sd (the sample sd over seeds of the
    per-seed differences; both scorings rank the same queries of the same split).
    """
    by_seed: dict[str, dict[int, float]] = {"l2": {}, "local-scaling": {}}
    for r in records:
        if r["name"] == name and r["train_artists"] == "all" and r["scoring"] in by_seed:
            by_seed[r["scoring"]][r["seed"]] = r["mean_auc"]
    seeds = sorted(by_seed["l2"])
    l2 = np.array([by_seed["l2"][s] for s in seeds])
    ls = np.array([by_seed["local-scaling"][s] for s in seeds])
    gain = float(ls.mean() - l2.mean())
    head = f"{name}: local-scaling {ls.mean():.4f}"
    if len(seeds) < 2:  # a single seed so far: no spread to compare with
        return f"{head} against l2 {l2.mean():.4f}, {gain:+.4f} AUC (one seed)"
    unpaired = max(float(l2.std(ddof=1)), float(ls.std(ddof=1)))
    paired = float((ls - l2).std(ddof=1))
    verdict = "above" if gain > 3 * unpaired else "NOT above"
    return (
        f"{head} ± {ls.std(ddof=1):.4f} against l2 {l2.mean():.4f} ± {l2.std(ddof=1):.4f} "
        f"({len(seeds)} seeds): gain {gain:+.4f} AUC = {gain / unpaired:.1f} unpaired seed sd "
        f"(larger sd {unpaired:.4f}; {verdict} 3 sd) = {gain / paired:.1f} paired sd "
        f"(sd of the per-seed gains {paired:.4f}; smallest per-seed gain "
        f"{float((ls - l2).min()):+.4f})"
    )


def per_seed_table(records: list[dict], names: tuple[str, ...]) -> list[str]:
    """Each seed's l2 and local-scaling mean AUC (all training artists) for the named spaces."""
    lines = ["| seed | " + " | ".join(f"{n} l2 | {n} local-scaling | gain" for n in names) + " |"]
    lines.append("|---" * (1 + 3 * len(names)) + "|")
    auc = {
        (r["name"], r["scoring"], r["seed"]): r["mean_auc"]
        for r in records
        if r["train_artists"] == "all"
    }
    for seed in sorted({r["seed"] for r in records}):
        cells = [str(seed)]
        for n in names:
            l2, ls = auc[(n, "l2", seed)], auc[(n, "local-scaling", seed)]
            cells += [f"{l2:.4f}", f"{ls:.4f}", f"{ls - l2:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=DEFAULT_TRACKS)
    parser.add_argument("--artists", type=int, default=DEFAULT_ARTISTS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="per network run")
    parser.add_argument("--nca-tracks", type=int, default=500, help="NCA fits on this many")
    parser.add_argument("--sizes", default="50,200,all", help="training-artist counts")
    parser.add_argument("--out", type=Path, default=Path("docs/comparison.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        write_demo_catalogue(
            out_dir=Path(folder), n_tracks=args.tracks, n_artists=args.artists, seed=0
        )
        catalogue = load_catalogue(data_dir=Path(folder))
    seeds = list(range(args.seeds))
    sizes = [None if s == "all" else int(s) for s in args.sizes.split(",")]
    scorings = [Scoring(name) for name in SCORINGS]
    # Seed by seed, rewriting the report after each: an interrupted run still
    # leaves every finished seed on record (the report says how many).
    result, autos = None, []
    for seed in seeds:
        done = compare_runs(
            catalogue,
            specs(args.epochs, args.nca_tracks),
            seeds=[seed],
            train_artists=sizes,
            scorings=scorings,
            on_run=lambda r: print(
                f"seed {r['seed']} {r['train_artists']} {r['name']} {r['scoring']}: "
                f"{r['mean_auc']:.4f}",
                flush=True,
            ),
        )
        if result is None:
            result = done
        else:
            result.records.extend(done.records)
        auto = AutoConfig(seed=seed, epochs=args.epochs, nca_max_tracks=args.nca_tracks)
        selection = select_candidates(catalogue, auto)
        run = refit(catalogue, selection)
        scoring = chosen_scoring(selection)
        (row,) = evaluate_run(catalogue, run, seed=seed, spaces=("model",), scorings=(scoring,))
        autos.append((seed, selection.best, row))
        print(f"auto seed {seed}: {selection.best.name} {selection.best.scoring}", flush=True)
        minutes = (time.perf_counter() - started) / 60
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(args, catalogue, result, autos, minutes))
        args.out.with_suffix(".json").write_text(json.dumps(result.as_json(), indent=1) + "\n")
    print(f"wrote {args.out} in {minutes:.1f} min")


def report(args, catalogue, result, autos, minutes: float) -> str:
    summary = result.summary()
    n_songs, n_artists = len(catalogue.tracks), len(np.unique(catalogue.artist_ids))
    whole = (
        "the whole default catalogue"
        if (args.tracks, args.artists) == (DEFAULT_TRACKS, DEFAULT_ARTISTS)
        else "a smaller catalogue than the default"
    )
    lines = [
        "# Configurations x scorings on the demo catalogue",
        "",
        "**Everything here is synthetic**: the demo catalogue of `musicsim demo-data`",
        f"({n_songs:,} tracks by {n_artists} artists, seed 0; {whole}), not real music.",
        "It shows the machinery (scorings, hubness, selection) and the size of effects",
        "on this generator only; issue 15 reports how the methods rank on 422 real clips.",
        "",
        f"Seeds finished: {len(autos)} of {args.seeds}. Regenerate with one command (this run",
        f"took {minutes:.0f} min on 2 CPU cores shared with other jobs; one BLAS thread):",
        "",
        "```",
        "OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/scoring_comparison.py "
        f"--tracks {args.tracks} --artists {args.artists} --seeds {args.seeds} "
        f"--epochs {args.epochs} "
        f"--nca-tracks {args.nca_tracks} "
        f"--sizes {args.sizes} --out {args.out}",
        "```",
        "",
        f"Scaled down to fit the machine: networks train {args.epochs} epoch(s) (the paper: 200),",
        f"NCA fits on {args.nca_tracks} tracks. Each seed draws the paper's 70/30 artist split;",
        "one query per evaluation artist; mean ± sample sd over seeds. Scorings use k = 10;",
        "artists with a single track take no part in the split (the counts in brackets).",
        "hubness columns are means over seeds of the evaluation songs' top-10 k-occurrence.",
        "",
        "## Local scaling against l2 (all training artists)",
        "",
        *(f"- {local_scaling_gain(result.records, name)}" for name in ("zscore", "lda")),
        "",
        "Issue 15 asks for a gain above 3 seed sd for both; the lines above say whether this",
        "run shows it (computed, not edited). The unpaired sd is mostly the spread between",
        "splits (which artists evaluate); the paired sd is the spread of the gain itself.",
        "",
        *per_seed_table(result.records, ("zscore", "lda")),
        "",
        "## Every configuration x scoring, with the size sweep",
        "",
        summary_markdown(summary),
        "## `musicsim train --method auto` per seed",
        "",
        "Chosen on validation artists drawn from the training artists; test score on the",
        "seed's evaluation artists with the chosen scoring.",
        "",
        "| seed | chosen | scoring | validation AUC | test mean AUC | test mAP |",
        "|---|---|---|---|---|---|",
    ]
    for seed, best, row in autos:
        lines.append(
            f"| {seed} | {best.name} | {best.scoring} | {best.mean_auc:.4f} | "
            f"{row.mean_auc:.4f} | {row.mean_average_precision:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
