"""The offline commands of `musicsim`: demo data, training, evaluation, the paper's table.

musicsim demo-data --out data/demo
musicsim train --data data/demo --triplets random --out models/default
musicsim evaluate --data data/demo --model models/default --json
musicsim paper --data data/demo --out models/paper
musicsim fetch-fma --out data/fma
musicsim compare --data data/demo --config configs/paper-random.toml --config configs/lda.toml
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from training.config import TrainConfig
from training.data.fetch import (
    FMA_METADATA_SHA1,
    FMA_METADATA_URL,
    FetchError,
    FetchReport,
    check_sha1,
    fetch_fma,
)
from training.data.synthetic import DEFAULT_ARTISTS, DEFAULT_TRACKS
from training.extras import MissingExtra

if TYPE_CHECKING:
    from training.data.fma import Catalogue
    from training.evaluation.scoring import Scoring
    from training.evaluation.spaces import SpaceScore

app = typer.Typer(
    help="Content-based music similarity with triplet networks.", no_args_is_help=True
)
# Progress and tables go to stderr so that --json output on stdout stays parseable.
console = Console(stderr=True)

DataOption = Annotated[
    Path, typer.Option("--data", help="Folder with FMA's tracks/features/genres.csv")
]
SeedOption = Annotated[int, typer.Option(help="Seed of the artist split, sampler and weights")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")]
EveryTrackOption = Annotated[
    bool,
    typer.Option(
        "--every-track", help="Every evaluation track is a query, not one random track per artist"
    ),
]

ScoringOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scoring",
        help="l2, local-scaling or mutual-proximity; repeat to score each (default: l2, "
        "or for a bundle's model row the scoring it records)",
    ),
]
ScoringKOption = Annotated[
    int, typer.Option("--scoring-k", help="Neighbours whose mean distance is a song's radius")
]
EvaluateScoringKOption = Annotated[
    int | None,
    typer.Option(
        "--scoring-k",
        help="Neighbours whose mean distance is a song's radius (default 10; without "
        "--scoring, the model row's scoring with this k instead of the bundle's own)",
    ),
]


def fail(message: str) -> typer.Exit:
    # escaped: messages quote user input and pip extras ("musicsim[audio]"), not markup
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code=2)


def parse_scorings(names: list[str] | None, k: int | None, *, recorded=None) -> list:
    """Scorings named on the command line (`scoring_asked`; `recorded` stands in when none
    is named); a bad name or k exits 2 naming the allowed values."""
    from training.evaluation.scoring import scoring_asked

    try:
        asked: list[str | None] = list(names) if names else [None]
        return [scoring_asked(name, k, recorded=recorded) for name in asked]
    except ValueError as exc:
        raise fail(str(exc)) from exc


def read_catalogue(data: Path) -> Catalogue:
    from training.data.fma import FMAFormatError, load_catalogue

    started = time.perf_counter()
    try:
        catalogue = load_catalogue(data_dir=data)
    except FMAFormatError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"loaded {len(catalogue.tracks):,} tracks by {len(set(catalogue.artist_ids)):,} artists "
        f"from {data} in {time.perf_counter() - started:.1f} s; dropped {catalogue.n_dropped} "
        f"with missing or non-finite features, {catalogue.n_unmatched} absent from tracks.csv"
    )
    return catalogue


@contextmanager
def epoch_progress(labels: list[str], epochs: int):
    """A progress bar per training run, showing the latest epoch loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        tasks = {
            label: progress.add_task(label, total=epochs, loss=float("nan")) for label in labels
        }

        def callback_for(label: str):
            return lambda epoch, loss: progress.update(tasks[label], completed=epoch + 1, loss=loss)

        yield {label: callback_for(label) for label in labels}


def print_scores(rows: list[SpaceScore], *, title: str, paper: dict[str, float] | None = None):
    from rich.table import Table

    table = Table(title=title)
    columns = ("space", "scoring", "mean AUC", "mAP", "recall@10", "nDCG@10", "queries", "songs")
    for column in (*columns, "N10 skew", "antihubs"):
        table.add_column(column)
    if paper:
        table.add_column("paper (full FMA)")
    for row in rows:
        cells = [row.space, row.scoring, f"{row.mean_auc:.3f}", f"{row.mean_average_precision:.3f}"]
        cells += [f"{row.recall_at_10:.3f}", f"{row.ndcg_at_10:.3f}"]
        cells += [str(row.n_queries), str(row.n_songs)]
        cells += [f"{row.hubness_skewness:.2f}", f"{row.antihub_share:.3f}"]
        if paper:
            cells.append(f"{paper[row.space]:.3f}" if row.space in paper else "")
        table.add_row(*cells)
    console.print(table)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Option(help="Folder to write the three CSV files into")],
    tracks: Annotated[int, typer.Option(help="Number of tracks")] = DEFAULT_TRACKS,
    artists: Annotated[int, typer.Option(help="Number of artists")] = DEFAULT_ARTISTS,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes")] = 0,
) -> None:
    """Write a synthetic catalogue in FMA's exact file format."""
    from training.data.synthetic.catalogue import write_demo_catalogue

    started = time.perf_counter()
    try:
        summary = write_demo_catalogue(out_dir=out, n_tracks=tracks, n_artists=artists, seed=seed)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"wrote {summary.n_tracks:,} tracks by {summary.n_artists:,} artists in "
        f"{summary.n_genres} top-level genres to {out} in {time.perf_counter() - started:.1f} s"
    )


@app.command()
def train(
    ctx: typer.Context,
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Bundle folder to write, e.g. models/NAME")],
    triplets: Annotated[str, typer.Option(help="random or genre")] = "random",
    epochs: Annotated[int, typer.Option()] = TrainConfig.epochs,
    triplets_per_epoch: Annotated[int, typer.Option()] = TrainConfig.triplets_per_epoch,
    batch_size: Annotated[int, typer.Option()] = TrainConfig.batch_size,
    margin: Annotated[float, typer.Option()] = TrainConfig.margin,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = TrainConfig.lr,
    width: Annotated[int, typer.Option(help="Width of both layers")] = TrainConfig.width,
    seed: SeedOption = TrainConfig.seed,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML run configuration (see `musicsim compare`); options given here override it",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="paper (the paper's network, or --config), or auto: choose among z-score, "
            "LDA, NCA, batch-hard and the paper's network x each scoring on validation artists"
        ),
    ] = "paper",
    auto_epochs: Annotated[
        int, typer.Option(min=1, help="auto: epochs of each network candidate")
    ] = 20,
    scoring: Annotated[
        str | None,
        typer.Option(help="Scoring the bundle records (l2, local-scaling, mutual-proximity)"),
    ] = None,
    scoring_k: ScoringKOption = 10,
) -> None:
    """Train a triplet network (or a linear metric) and save it as a bundle."""
    from training.artefacts import save_bundle
    from training.experiments.paper import PAPER_TABLE1, evaluate_run
    from training.train import train_on_catalogue

    if method not in ("paper", "auto"):
        raise fail(f"method must be paper or auto, got {method!r}")
    if method == "auto":
        if scoring is not None or config_file is not None:
            raise fail("--method auto chooses the scoring and configuration itself")
        train_auto(data=data, out=out, seed=seed, epochs=auto_epochs, scoring_k=scoring_k)
        return
    (recorded,) = parse_scorings([scoring or "l2"], scoring_k)

    flags = dict(
        triplets=triplets,
        epochs=epochs,
        triplets_per_epoch=triplets_per_epoch,
        batch_size=batch_size,
        margin=margin,
        lr=lr,
        width=width,
        seed=seed,
    )
    if config_file is not None:
        train_from_config(
            ctx, data=data, out=out, config_file=config_file, flags=flags, scoring=recorded
        )
        return
    try:
        config = TrainConfig(**flags)  # type: ignore[arg-type]
    except ValueError as exc:
        raise fail(str(exc)) from exc
    catalogue = read_catalogue(data)
    with epoch_progress([f"triplet-{triplets}"], epochs) as callbacks:
        try:
            run = train_on_catalogue(catalogue, config, on_epoch=callbacks[f"triplet-{triplets}"])
        except ValueError as exc:
            raise fail(str(exc)) from exc
    rows = evaluate_run(catalogue, run, seed=seed, scorings=(recorded,))
    metrics = {"evaluation": [r.as_dict() for r in rows], "n_songs": rows[0].n_songs}
    save_bundle(
        run, out_dir=out, data_fingerprint=catalogue.fingerprint, metrics=metrics, scoring=recorded
    )
    print_scores(rows, title=f"{out}: artist retrieval on {len(run.split.eval)} evaluation artists")
    console.print(f"saved bundle to {out}")
    # After save_bundle, which replaces the folder whole; the bundle's hashes ignore report/.
    paper_rows = {**PAPER_TABLE1, "model": PAPER_TABLE1[f"triplet-{triplets}"]}
    write_report(
        out, catalogue, runs={"model": run}, rows=rows, seed=seed,
        title=f"musicsim train --triplets {triplets} ({out})", paper=paper_rows,
    )  # fmt: skip


def train_auto(*, data: Path, out: Path, seed: int, epochs: int, scoring_k: int) -> None:
    """`musicsim train --method auto`: select on validation artists, refit, evaluate, save."""
    from training.artefacts import save_bundle
    from training.experiments.paper import evaluate_run
    from training.selection import AutoConfig, chosen_scoring, refit, select_candidates

    try:
        config = AutoConfig(seed=seed, epochs=epochs, scoring_k=scoring_k)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    catalogue = read_catalogue(data)
    try:
        selection = select_candidates(catalogue, config)
        run = refit(catalogue, selection)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    for c in sorted(selection.candidates, key=lambda c: c.key(), reverse=True):
        console.print(
            f"  {c.name:>10} {c.scoring:>17}: validation AUC {c.mean_auc:.4f} "
            f"mAP {c.mean_average_precision:.4f}"
        )
    best = selection.best
    console.print(f"chose {best.name} with {best.scoring} (validation AUC {best.mean_auc:.4f})")
    scoring = chosen_scoring(selection)
    rows = evaluate_run(catalogue, run, seed=seed, scorings=(scoring,))
    metrics = {"evaluation": [r.as_dict() for r in rows], "n_songs": rows[0].n_songs}
    save_bundle(
        run,
        out_dir=out,
        data_fingerprint=catalogue.fingerprint,
        metrics=metrics,
        name=f"auto-{best.name}",
        scoring=scoring,
        selection=selection.as_dict(),
    )
    print_scores(rows, title=f"{out}: artist retrieval on {len(run.split.eval)} evaluation artists")
    console.print(f"saved bundle to {out}")


def write_report(folder: Path, catalogue: Catalogue, **details) -> None:
    """The run's report with figures in folder/report/, or a note naming the missing extra."""
    try:
        from training.experiments.report import REPORT_DIR, write_run_report
    except MissingExtra as exc:
        console.print(f"[yellow]no report written:[/yellow] {escape(str(exc))}")
        return
    path = write_run_report(catalogue, out_dir=folder / REPORT_DIR, **details)
    console.print(f"wrote the report with its figures to {path}")


def train_from_config(
    ctx: typer.Context, *, data: Path, out: Path, config_file: Path, flags: dict, scoring: Scoring
) -> None:
    """`musicsim train --config`: the file's configuration, then the flags typed on the line;
    the bundle records `scoring` and its model row is scored with it, as without --config."""
    from training.artefacts import save_bundle
    from training.experiments.compare import fit_run, load_run_spec
    from training.experiments.paper import evaluate_run

    typed = {
        name: value
        for name, value in flags.items()
        if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"
    }
    try:
        spec = load_run_spec(config_file)
        config = dataclasses.replace(spec.config, **typed)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from exc
    catalogue = read_catalogue(data)
    console.print(f"training {spec.name} ({type(config).__name__}) from {config_file}")
    try:
        run = fit_run(catalogue, config)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    rows = evaluate_run(catalogue, run, seed=config.seed, scorings=(scoring,))
    metrics = {"evaluation": [r.as_dict() for r in rows], "n_songs": rows[0].n_songs}
    save_bundle(
        run,
        out_dir=out,
        data_fingerprint=catalogue.fingerprint,
        metrics=metrics,
        name=spec.name,
        scoring=scoring,
    )
    print_scores(rows, title=f"{out}: artist retrieval on {len(run.split.eval)} evaluation artists")
    console.print(f"saved bundle to {out}")


@app.command()
def evaluate(
    data: DataOption,
    model: Annotated[Path, typer.Option(help="Bundle folder, e.g. models/default")],
    seed: Annotated[int, typer.Option(help="Seed of the query draw")] = 0,
    as_json: JsonOption = False,
    every_track: EveryTrackOption = False,
    scoring: ScoringOption = None,
    scoring_k: EvaluateScoringKOption = None,
) -> None:
    """Retrieval scores of raw, z-scored and the model's space on its evaluation artists."""
    from training.artefacts import BundleError, load_bundle
    from training.experiments.paper import evaluate_run

    scorings = parse_scorings(scoring, scoring_k)
    try:
        bundle = load_bundle(model)
        (recorded,) = parse_scorings(None, scoring_k, recorded=bundle.scoring)
    except BundleError as exc:
        raise fail(str(exc)) from exc
    catalogue = read_catalogue(data)
    if bundle.manifest["data"]["fingerprint"] != catalogue.fingerprint:
        console.print("[yellow]warning:[/yellow] this data differs from the model's training data")
    try:
        if scoring:
            rows = evaluate_run(
                catalogue, bundle, seed=seed, every_track=every_track, scorings=scorings
            )
        else:  # the baselines by L2, the model by the scoring it was chosen with
            rows = evaluate_run(
                catalogue, bundle, seed=seed, every_track=every_track, spaces=("raw", "zscore")
            )
            rows += evaluate_run(
                catalogue,
                bundle,
                seed=seed,
                every_track=every_track,
                spaces=("model",),
                scorings=(recorded,),
            )
    except ValueError as exc:
        raise fail(f"{exc} (are these the model's data?)") from exc
    if as_json:
        print(json.dumps({"rows": [r.as_dict() for r in rows], "n_songs": rows[0].n_songs}))
    else:
        print_scores(rows, title=f"{model} on {data}")


@app.command()
def paper(
    data: DataOption,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to save both bundles, table1.json and report/ (figures)"),
    ] = None,
    epochs: Annotated[int, typer.Option()] = TrainConfig.epochs,
    seed: SeedOption = TrainConfig.seed,
    as_json: JsonOption = False,
    scoring: ScoringOption = None,
    scoring_k: ScoringKOption = 10,
) -> None:
    """Train both triplet variants and print the paper's Table 1 beside ours."""
    from training.artefacts import save_bundle
    from training.experiments.paper import PAPER_TABLE1, reproduce_table1

    scorings = parse_scorings(scoring, scoring_k)
    catalogue = read_catalogue(data)
    labels = ["triplet-random", "triplet-genre"]
    with epoch_progress(labels, epochs) as callbacks:
        table = reproduce_table1(
            catalogue,
            base=TrainConfig(epochs=epochs, seed=seed),
            on_epoch={"random": callbacks["triplet-random"], "genre": callbacks["triplet-genre"]},
            scorings=scorings,
        )
    if out is not None:
        # A bundle serves with the one scoring asked; with several (or none), with l2.
        recorded = scorings[0] if len(scorings) == 1 else None
        for name, run in table.runs.items():
            own = [r.as_dict() for r in table.rows if r.space in ("raw", "zscore", name)]
            metrics = {"evaluation": own, "n_songs": table.n_songs}
            save_bundle(
                run,
                out_dir=out / name,
                data_fingerprint=catalogue.fingerprint,
                metrics=metrics,
                scoring=recorded,
            )
        (out / "table1.json").write_text(json.dumps(table.as_json(), indent=2) + "\n")
        write_report(
            out, catalogue, runs=table.runs, rows=table.rows, seed=seed,
            title=f"musicsim paper ({data})", paper=PAPER_TABLE1,
        )  # fmt: skip
    if as_json:
        print(json.dumps(table.as_json()))
    else:
        print_scores(table.rows, title=f"Table 1 on {data}", paper=PAPER_TABLE1)


def parse_sizes(values: list[str]) -> list[int | None]:
    """--train-artists values: positive integers, or "all" (None)."""
    sizes: list[int | None] = []
    for value in values:
        if value == "all":
            sizes.append(None)
        elif value.isdigit() and int(value) >= 2:
            sizes.append(int(value))
        else:
            raise fail(f"--train-artists takes integers of at least 2 or 'all', got {value!r}")
    return sizes


@app.command()
def compare(
    data: DataOption,
    configs: Annotated[
        list[Path], typer.Option("--config", help="TOML run configuration; repeat for several")
    ],
    seeds: Annotated[int, typer.Option(min=1, help="Run seeds 0..N-1 (split and training)")] = 5,
    first_seed: Annotated[
        int, typer.Option(min=0, help="Start at this seed: runs first..first+N-1")
    ] = 0,
    train_artists: Annotated[
        list[str] | None,
        typer.Option(help="Training-artist counts to sweep, e.g. 50 200 all; repeat the option"),
    ] = None,
    every_track: EveryTrackOption = False,
    baselines: Annotated[bool, typer.Option(help="Also score raw and z-scored features")] = True,
    out: Annotated[
        Path | None, typer.Option(help="Folder for comparison.json and the PNG figures")
    ] = None,
    as_json: JsonOption = False,
    scoring: ScoringOption = None,
    scoring_k: ScoringKOption = 10,
) -> None:
    """Train and evaluate several configurations over the same seeds and splits."""
    from training.experiments.compare import compare_runs, load_run_spec, summary_markdown
    from training.experiments.figures import plot_metrics, plot_size_sweep

    scorings = parse_scorings(scoring, scoring_k)

    try:
        specs = [load_run_spec(path) for path in configs]
    except ValueError as exc:
        raise fail(str(exc)) from exc
    sizes = parse_sizes(train_artists or ["all"])
    catalogue = read_catalogue(data)

    def on_run(record: dict) -> None:
        console.print(
            f"seed {record['seed']} artists {record['train_artists']} {record['name']} "
            f"({record['scoring']}): "
            f"AUC {record['mean_auc']:.4f} mAP {record['mean_average_precision']:.4f} "
            f"({record['seconds']:.0f} s)"
        )

    try:
        result = compare_runs(
            catalogue,
            specs,
            seeds=list(range(first_seed, first_seed + seeds)),
            train_artists=sizes,
            every_track=every_track,
            baselines=baselines,
            on_run=on_run,
            scorings=scorings,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    summary = result.summary()
    print_summary(summary, title=f"{len(specs)} configurations on {data}, {seeds} seeds")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(json.dumps(result.as_json(), indent=2) + "\n")
        (out / "summary.md").write_text(summary_markdown(summary))
        if len(scorings) > 1:  # one bar or line per configuration and scoring
            summary = [{**r, "name": f"{r['name']} ({r['scoring']})"} for r in summary]
        plot_metrics(summary, path=out / "comparison-metrics.png")
        if len(sizes) > 1:
            plot_size_sweep(summary, path=out / "comparison-size-sweep.png")
            plot_size_sweep(
                summary, path=out / "comparison-size-sweep-map.png", metric="mean_average_precision"
            )
        console.print(f"wrote comparison.json, summary.md and figures to {out}")
    if as_json:
        print(json.dumps(result.as_json()))


def print_summary(summary: list[dict], *, title: str) -> None:
    from rich.table import Table

    from training.experiments.compare import HUBNESS, HUBNESS_LABELS, METRICS

    table = Table(title=title)
    for column in ("configuration", "scoring", "training artists", "seeds", "mean AUC", "mAP"):
        table.add_column(column)
    for column in ("recall@10", "nDCG@10", "seconds"):
        table.add_column(column)
    for column in HUBNESS_LABELS:
        table.add_column(column)
    for row in summary:
        cells = [row["name"], row["scoring"], str(row["train_artists"]), str(row["n_seeds"])]
        for metric in (*METRICS, "seconds"):
            cells.append(f"{row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f}")
        cells += [f"{row[f'{m}_mean']:.2f}" if f"{m}_mean" in row else "-" for m in HUBNESS]
        table.add_row(*cells)
    console.print(table)


@app.command()
def extract(
    paths: Annotated[
        list[Path], typer.Argument(help="Audio files or folders (searched recursively)")
    ],
    out: Annotated[Path, typer.Option(help="Folder for features.csv, tracks.csv, genres.csv")],
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes of the local Dask cluster [default: cores]"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="An existing Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786"),
    ] = None,
    whole_file: Annotated[
        bool, typer.Option("--whole-file", help="Analyse whole files, not the middle 30 s")
    ] = False,
) -> None:
    """Extract FMA's 518 features from audio files into an FMA-format folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.audio.extraction import (
        ClusterError,
        extract_catalogue,
        find_audio_files,
        library_root,
    )
    from training.audio.recipe import EXCERPT_SECONDS

    if jobs is not None and scheduler is not None:
        raise fail("--jobs sizes the local cluster; with --scheduler the cluster's workers run")
    try:
        files = find_audio_files(paths=paths)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    columns = [TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("files", total=len(files))

        def on_file(path: Path, reason: str | None) -> None:
            progress.advance(task)
            if reason is not None:
                progress.console.print(f"[yellow]skipped[/yellow] {path}: {reason}")

        try:
            report = extract_catalogue(
                paths=files,
                out_dir=out,
                jobs=jobs or os.cpu_count() or 1,
                scheduler=scheduler,
                excerpt_seconds=None if whole_file else EXCERPT_SECONDS,
                on_file=on_file,
                root=library_root(paths),
            )
        except (ValueError, ClusterError) as exc:
            raise fail(str(exc)) from exc
    console.print(
        f"wrote {report.written} tracks to {out} ({report.reused} done by an earlier run); "
        f"skipped {len(report.skipped)}"
    )
    if report.skipped:
        raise typer.Exit(code=1)


@app.command("fetch-fma")
def fetch_fma_command(
    out: Annotated[Path, typer.Option(help="Folder for the zip and the loader's CSV files")],
    url: Annotated[str, typer.Option(help="Where to download fma_metadata.zip")] = (
        FMA_METADATA_URL
    ),
    sha1: Annotated[str, typer.Option(help="Expected SHA-1 of the zip")] = FMA_METADATA_SHA1,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the server")] = 30,
) -> None:
    """Download FMA's metadata release (resumable), check its SHA-1, unpack the CSV files."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    try:
        check_sha1(sha1)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    columns = [TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    progress = Progress(*columns, TimeRemainingColumn(), console=console)
    tasks: list = []

    def on_progress(done: int, total: int | None) -> None:
        if not tasks:  # shown only once a download starts: a verified zip needs none
            progress.start()
            tasks.append(progress.add_task("fma_metadata.zip", total=total))
        progress.update(tasks[0], completed=done, total=total)

    try:
        report = fetch_fma(
            out_dir=out,
            url=url,
            sha1=sha1,
            timeout=timeout,
            on_progress=on_progress,
            on_note=progress.console.print,
        )
    except FetchError as exc:
        # Not a usage error (2): the network or the file failed; the message says what's kept.
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    finally:
        if tasks:
            progress.stop()
    print_fetch_report(report, out)


def print_fetch_report(report: FetchReport, out: Path) -> None:
    if report.downloaded:
        console.print(f"verified the SHA-1 of {report.zip_path}")
    if report.extracted:
        console.print(f"extracted {', '.join(report.extracted)} into {out}")
    if report.up_to_date:
        console.print(f"already up to date in {out}: {', '.join(report.up_to_date)}")
    console.print(f"ready: musicsim train --data {out} --out models/fma")


def main() -> None:
    app()
