"""`musicsim`: the offline commands plus the service's `import` and `serve`.

musicsim import --data data/demo          # FMA-format folder -> database
musicsim serve --host 127.0.0.1 --port 8000

Commands import what they use inside their bodies, so `musicsim --help` and the
commands that need no model or audio library answer at once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from training.cli import DataOption, app, console, fail, read_catalogue
from training.extras import MissingExtra

if TYPE_CHECKING:
    from app.config import Settings

__all__ = ["app", "main"]


def main() -> None:
    """The `musicsim` script: the commands, with a missing optional extra named, not traced."""
    try:
        app()
    except MissingExtra as exc:
        raise SystemExit(fail(str(exc)).exit_code) from exc


def read_settings(**overrides) -> Settings:
    """Settings from MUSICSIM_* variables and .env; a bad value stops with its name."""
    from pydantic import ValidationError

    from app.config import Settings

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"MUSICSIM_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"bad setting: {problems}") from exc


@app.command("import")
def import_data(
    data: DataOption,
    catalogue_name: Annotated[
        str | None,
        typer.Option(
            "--catalogue",
            help="Catalogue to fill [default: fma; an extracted library: its folder's name]",
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Remove that catalogue's songs first")
    ] = False,
) -> None:
    """Load an FMA-format folder into the database (MUSICSIM_DATABASE_URL) as one catalogue.

    Songs of other catalogues, and songs added at run time, are never changed;
    importing the same folder again changes nothing.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.catalogue import CatalogueError
    from app.catalogue.importing import import_catalogue, source_of
    from app.db import open_database

    settings = read_settings()
    catalogue = read_catalogue(data)
    try:
        source = source_of(data, name=catalogue_name)
    except CatalogueError as exc:
        raise fail(str(exc)) from exc
    engine = open_database(settings.database_url)
    started = time.perf_counter()
    columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("songs", total=len(catalogue.tracks))
        try:
            report = import_catalogue(
                engine,
                catalogue,
                source=source,
                replace=replace,
                on_rows=lambda k: progress.advance(task, k),
            )
        except CatalogueError as exc:
            raise fail(str(exc)) from exc
    engine.dispose()
    replaced = f", {report.replaced:,} removed first" if replace else ""
    console.print(
        f"catalogue {report.catalogue!r}: {report.added:,} songs added, {report.kept:,} "
        f"already there{replaced}, in {engine.url.render_as_string(hide_password=True)} "
        f"({time.perf_counter() - started:.1f} s)"
    )


@app.command()
def library(
    path: Annotated[Path, typer.Argument(help="Your music folder (searched recursively)")],
    catalogue_name: Annotated[
        str | None, typer.Option("--catalogue", help="Catalogue name [default: the folder's name]")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes analysing files [default: cores]"),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Where analyses are kept between runs [default: data/library/NAME]"),
    ] = None,
) -> None:
    """Scan a music folder into the database and make a model that fits it.

    New files are analysed, changed ones re-analysed, songs whose files are gone
    removed; the bundle at MUSICSIM_MODEL_DIR is remade. Exit status 1 when some
    files could not be analysed (they are named and skipped).
    """
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy.orm import Session

    from app.catalogue import CatalogueError
    from app.catalogue.library import near_duplicates, read_library_songs, sync_library
    from app.db import open_database
    from training.audio.extraction import find_audio_files
    from training.audio.library import LibraryError, check_root, scan_library
    from training.library_model import make_library_model

    settings = read_settings()
    try:
        root = check_root(path)
    except LibraryError as exc:
        raise fail(str(exc)) from exc
    name = catalogue_name or root.name
    _refuse_foreign_bundle(settings.model_dir)
    columns = [TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("files", total=len(find_audio_files(paths=[root])))

        def on_file(file: Path, reason: str | None) -> None:
            progress.advance(task)
            if reason is not None:
                progress.console.print(f"[yellow]skipped[/yellow] {file}: {reason}")

        scan = scan_library(
            root=root,
            state_dir=state or Path("data/library") / name,
            jobs=jobs or os.cpu_count() or 1,
            on_file=on_file,
        )
    engine = open_database(settings.database_url)
    try:
        report = sync_library(engine, scan, name=name)
    except CatalogueError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"library {name!r} ({root}): {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged, "
        f"{len(scan.skipped)} skipped; {scan.analysed} files analysed this run"
    )
    for verb, files in (("added", report.added), ("updated", report.updated)):
        for file in files:
            console.print(f"  {verb} {file}")
    for file in report.removed:
        console.print(f"  removed {file} (file gone)")
    with Session(engine) as session:
        songs = read_library_songs(session, name=name)
    engine.dispose()
    for a, b in near_duplicates(songs):
        console.print(f"[yellow]near-duplicates[/yellow]: songs {a} and {b} are one recording")
    try:
        selection = make_library_model(
            features=songs.features,
            artist_ids=songs.artist_ids,
            labelled=songs.labelled,
            out_dir=settings.model_dir,
            name=name,
        )
    except ValueError as exc:
        raise fail(f"no model made: {exc}") from exc
    console.print(f"model {settings.model_dir}: {selection['method']} ({selection['reason']})")
    for c in selection.get("auto", {}).get("candidates", []):  # when selection ran
        console.print(
            f"  {c['name']:>6} {c['scoring']:>16}: validation AUC {c['mean_auc']:.4f} "
            f"mAP {c['mean_average_precision']:.4f}"
        )
    if scan.skipped:
        console.print(f"[red]{len(scan.skipped)} file(s) could not be analysed[/red]:")
        for skipped, reason in scan.skipped:
            console.print(f"  {skipped}: {reason}")
        raise typer.Exit(code=1)


def _refuse_foreign_bundle(model_dir: Path) -> None:
    """Never replace a bundle that `musicsim library` did not make (e.g. the demo's)."""
    import json

    from training.library_model import LIBRARY_MAKER

    manifest = Path(model_dir) / "manifest.json"
    if not manifest.is_file():
        return
    try:
        made_here = (
            json.loads(manifest.read_text()).get("selection", {}).get("made_by") == LIBRARY_MAKER
        )
    except ValueError:
        made_here = False
    if not made_here:
        raise fail(
            f"{model_dir} holds a model that musicsim library did not make: set "
            "MUSICSIM_MODEL_DIR to another folder (e.g. models/mymusic)"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    model: Annotated[Path | None, typer.Option(help="Bundle to serve (MUSICSIM_MODEL_DIR)")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Serve a model that does not fit the catalogue's features anyway"
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes on one port (MUSICSIM_WORKERS); they share the persisted,"
            " memory-mapped embeddings",
        ),
    ] = None,
) -> None:
    """Serve the similarity API (settings from MUSICSIM_* variables and .env)."""
    import os

    from app.main import create_app
    from app.telemetry.logs import configure_logging
    from training.artefacts import BundleError, load_bundle

    overrides: dict = {} if model is None else {"model_dir": model}
    if force:
        overrides["serve_misfit_model"] = True
    settings = read_settings(**overrides)
    if settings.audio_warm_up is None:  # a server warms its audio workers unless told not to
        settings = settings.model_copy(update={"audio_warm_up": True})
    processes = workers or settings.workers
    try:
        bundle = load_bundle(settings.model_dir)  # refuse a bad bundle, with its reason
        if not settings.serve_misfit_model:
            _check_model_fits(settings, bundle)  # before uvicorn: a message, not a traceback
        service = create_app(settings) if processes == 1 else None
    except (BundleError, ValueError) as exc:
        raise fail(str(exc)) from exc
    configure_logging(settings.log_format)  # MUSICSIM_LOG_FORMAT=json: one object per line
    from app import server  # uvicorn with header/body/idle timeouts

    if service is not None:
        server.serve(service, settings, host=host, port=port)
        return
    if settings.index_cache_dir is None:
        console.print("warning: without MUSICSIM_INDEX_CACHE_DIR each worker holds its own copy")
    # Workers are fresh processes that build the app from the environment.
    os.environ["MUSICSIM_MODEL_DIR"] = str(settings.model_dir)
    os.environ["MUSICSIM_SERVE_MISFIT_MODEL"] = "1" if settings.serve_misfit_model else "0"
    os.environ["MUSICSIM_AUDIO_WARM_UP"] = "1" if settings.audio_warm_up else "0"
    server.serve_workers("app.cli:worker_app", settings, host=host, port=port, workers=processes)


def worker_app():
    """One `serve --workers N` process: settings from the environment, logging as configured."""
    from app.main import create_app
    from app.telemetry.logs import configure_logging

    settings = read_settings()
    configure_logging(settings.log_format)
    return create_app(settings)


def _check_model_fits(settings: Settings, bundle) -> None:
    from sqlalchemy.orm import Session

    from app.catalogue.fit import check_bundle_fits
    from app.db import open_database

    engine = open_database(settings.database_url)
    try:
        with Session(engine) as session:
            check_bundle_fits(session, bundle)
    finally:
        engine.dispose()


if __name__ == "__main__":  # python -m app.cli
    main()
