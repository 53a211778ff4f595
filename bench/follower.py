"""What one poll of the follower (app/index/follower.py) costs, on SQLite and on PostgreSQL.

    .venv/bin/python bench/follower.py --data data/replica-bench/catalogue \
        --postgres-url "$MUSICSIM_TEST_POSTGRES_URL"          # inside the cluster command
    .venv/bin/python bench/follower.py --data data/demo --no-write   # SQLite only

The catalogue in `--data` (an FMA-format folder) is imported into a fresh SQLite file
and, with `--postgres-url`, into a fresh database on that server (created and dropped
here). An index of all its songs is built as at start-up, with the raw features as the
embedding: the follower's cost is reading and comparing, and embedding new songs costs
the same in every poll design. Then, `--rounds` times each: a poll that finds nothing
new (the row count equals the index size), and a poll after another writer stored one
song (every id is read and compared, the new song fetched and indexed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmarks_doc import BENCHMARKS, write_section
from load import _machine
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue.importing import import_catalogue
from app.catalogue.writes import NewSong, add_song
from app.db import open_database
from app.index.follower import CatalogueFollower
from app.index.loading import build_index
from training.data.features import N_FEATURES
from training.data.fma import load_catalogue

SECTION = "## Follower: one poll of the songs table"
DATABASE = "musicsim_follower_bench"


def main() -> None:
    args = _arguments()
    catalogue = load_catalogue(data_dir=args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        urls = {"SQLite": f"sqlite:///{Path(folder) / 'follower.db'}"}
        if args.postgres_url:
            urls["PostgreSQL"] = _fresh_database(args.postgres_url)
        try:
            for name, url in urls.items():
                print(f"{name}: importing {len(catalogue.tracks):,} songs", file=sys.stderr)
                engine = open_database(url)
                import_catalogue(engine, catalogue)
                rows.append((name, *_measure(engine, rounds=args.rounds)))
                engine.dispose()
        finally:
            if args.postgres_url:
                _drop_database(args.postgres_url)
    text_ = _report(rows, n_songs=len(catalogue.tracks), rounds=args.rounds)
    print(text_)
    if args.write:
        write_section(SECTION, text_)
        print(f"updated {BENCHMARKS}", file=sys.stderr)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an FMA-format folder")
    parser.add_argument("--postgres-url", help="a server to create a database on")
    parser.add_argument("--rounds", type=int, default=20, help="polls of each kind (20)")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print only, leave BENCHMARKS.md"
    )
    return parser.parse_args()


def _measure(engine, *, rounds: int) -> tuple[float, float]:
    """Median seconds of a poll that finds nothing, and of one that finds one new song."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    embed = np.asarray  # the raw features: see the module docstring
    with sessions() as session:
        index = build_index(session, embed, N_FEATURES)
    follower = CatalogueFollower(sessions, index, embed, interval_s=1.0)  # polled by hand
    idle, one_new = [], []
    rng = np.random.default_rng(0)
    for n in range(rounds):
        started = time.perf_counter()
        assert follower.poll_once() == 0
        idle.append(time.perf_counter() - started)
        with Session(engine) as other_writer:  # another process's write, not indexed here
            features = rng.normal(size=N_FEATURES).astype(np.float32)
            add_song(other_writer, NewSong(title=f"poll {n}", artist="Bench", features=features))
        started = time.perf_counter()
        assert follower.poll_once() == 1
        one_new.append(time.perf_counter() - started)
    return float(np.median(idle)), float(np.median(one_new))


def _fresh_database(server_url: str) -> str:
    _drop_database(server_url)
    with _admin(server_url) as connection:
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    return make_url(server_url).set(database=DATABASE).render_as_string(hide_password=False)


def _drop_database(server_url: str) -> None:
    with _admin(server_url) as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))


@contextlib.contextmanager
def _admin(server_url: str):
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _report(rows, *, n_songs: int, rounds: int) -> str:
    shown = []
    arguments = iter(sys.argv[1:])
    for argument in arguments:
        if argument == "--postgres-url":
            next(arguments, None)
            shown.append('--postgres-url "$MUSICSIM_TEST_POSTGRES_URL"')
        else:
            shown.append(shlex.quote(argument))
    command = " ".join([".venv/bin/python bench/follower.py", *shown])
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` (at niceness "
        f"{os.nice(0)}) on {_machine()} "
        f"(PostgreSQL: the throw-away server of `scripts/postgres-cluster.sh`, loopback).",
        f"{n_songs:,} songs stored and indexed; median of {rounds} polls each, in the "
        f"polling process, embedding excluded (see the script).",
        "",
        "| database | poll, nothing new (ms) | poll, one song stored elsewhere (ms) |",
        "|---|---|---|",
        *(f"| {name} | {idle * 1000:.1f} | {one * 1000:.1f} |" for name, idle, one in rows),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
