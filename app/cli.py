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
def import_data(data: DataOption) -> None:
    """Load an FMA-format catalogue into the database (MUSICSIM_DATABASE_URL); idempotent."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.catalogue import CatalogueError
    from app.catalogue.importing import import_catalogue
    from app.db import open_database

    settings = read_settings()
    catalogue = read_catalogue(data)
    engine = open_database(settings.database_url)
    started = time.perf_counter()
    columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("songs", total=len(catalogue.tracks))
        try:
            n = import_catalogue(engine, catalogue, on_rows=lambda k: progress.advance(task, k))
        except CatalogueError as exc:
            raise fail(str(exc)) from exc
    engine.dispose()
    console.print(
        f"imported {n:,} songs into {engine.url.render_as_string(hide_password=True)} "
        f"in {time.perf_counter() - started:.1f} s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    model: Annotated[Path | None, typer.Option(help="Bundle to serve (MUSICSIM_MODEL_DIR)")] = None,
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

    import uvicorn

    from app.main import create_app
    from app.telemetry.logs import configure_logging
    from training.artefacts import BundleError, load_bundle
    from training.audio.warmup import warm_up_in_background

    settings = read_settings() if model is None else read_settings(model_dir=model)
    processes = workers or settings.workers
    try:
        load_bundle(settings.model_dir)  # refuse to start on a bad bundle, with its reason
        service = create_app(settings) if processes == 1 else None
    except (BundleError, ValueError) as exc:
        raise fail(str(exc)) from exc
    configure_logging(settings.log_format)  # MUSICSIM_LOG_FORMAT=json: one object per line
    # uvicorn's own handlers and access log off: ours carry request ids (app/telemetry).
    if service is not None:
        warm_up_in_background()  # the first upload then finds librosa's kernels compiled
        uvicorn.run(service, host=host, port=port, log_config=None, access_log=False)
        return
    if settings.index_cache_dir is None:
        console.print("warning: without MUSICSIM_INDEX_CACHE_DIR each worker holds its own copy")
    # Workers are fresh processes that build the app from the environment.
    os.environ["MUSICSIM_MODEL_DIR"] = str(settings.model_dir)
    uvicorn.run(
        "app.cli:worker_app",
        factory=True,
        workers=processes,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


def worker_app():
    """One `serve --workers N` process: settings from the environment, logging as configured."""
    from app.main import create_app
    from app.telemetry.logs import configure_logging
    from training.audio.warmup import warm_up_in_background

    settings = read_settings()
    configure_logging(settings.log_format)
    warm_up_in_background()
    return create_app(settings)


if __name__ == "__main__":  # python -m app.cli
    main()
