"""Throughput of GET /songs/{id}/similar with one vs two API replicas on one PostgreSQL.

    bash -c 'source scripts/postgres-cluster.sh && trap stop_test_postgres EXIT &&
             start_test_postgres &&
             .venv/bin/python bench/replicas.py --postgres-url "$MUSICSIM_TEST_POSTGRES_URL"'
    .venv/bin/python bench/replicas.py --postgres-url postgresql+psycopg://u:p@host/postgres \
        --reuse --duration 60 --no-write

`--postgres-url` names a server where this script may create and drop a database
(`musicsim_replicas_bench`); the first command above runs it on the throw-away
server the tests use. Steps: a synthetic catalogue (FMA's size by default, `--reuse`
keeps one in `--work`), a model (`--model`, else `musicsim train --epochs 20`), a
fresh database on that server (`musicsim import`), then: one `musicsim serve`
replica on 127.0.0.1 under load from `--clients` threads for `--duration` seconds;
a second replica on the same database; the same load spread evenly over both (client
thread i talks to replica i mod 2). Load and report come from bench/load.py. Server
and clients share this machine's cores, so two replicas cannot double the throughput
of a machine that one replica already keeps busy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_doc import BENCHMARKS, write_section
from load import (
    FMA_ARTISTS,
    FMA_TRACKS,
    MUSICSIM,
    ROOT,
    Load,
    _free_port,
    _load,
    _machine,
    _run,
    _stop,
    _wait_for_health,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SECTION = "## Replicas: GET /songs/{id}/similar on PostgreSQL, one vs two replicas"
DATABASE = "musicsim_replicas_bench"


def main() -> None:
    args = _arguments()
    args.work.mkdir(parents=True, exist_ok=True)
    data, model = _catalogue_and_model(args)
    database_url = _fresh_database(args.postgres_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env |= {"MUSICSIM_DATABASE_URL": database_url, "MUSICSIM_MODEL_DIR": str(model)}
    import_seconds = _run("import", ["--data", data], env=env)
    song_ids = _song_ids(database_url)

    servers: list[subprocess.Popen] = []
    results: list[tuple[int, str, Load]] = []
    try:
        urls: list[str] = []
        machine = ""
        for replica in (1, 2):
            url, server = _start_replica(env, args.work, replica)
            servers.append(server)
            urls.append(url)
            machine = machine or _machine()  # CPU, cores, load average before the first load
            before = ", ".join(f"{x:.1f}" for x in os.getloadavg())  # just before this load
            print(f"loading {replica} replica(s) for {args.duration:.0f} s", file=sys.stderr)
            load = _load(
                urls, song_ids, clients=args.clients, duration=args.duration, cap=1_000_000
            )
            results.append((replica, before, load))
    finally:
        for server in servers:
            _stop(server)
        _drop_database(args.postgres_url)

    text_ = _report(
        results, machine=machine, n_songs=len(song_ids), args=args, import_seconds=import_seconds
    )
    print(text_)
    if args.write:
        write_section(SECTION, text_)
        print(f"updated {BENCHMARKS}", file=sys.stderr)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", required=True, help="a server to create a database on")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "data" / "replica-bench", help="folder for files"
    )
    parser.add_argument("--reuse", action="store_true", help="reuse catalogue and model in --work")
    parser.add_argument("--model", type=Path, help="bundle to serve (else one is trained)")
    parser.add_argument("--tracks", type=int, default=FMA_TRACKS)
    parser.add_argument("--artists", type=int, default=FMA_ARTISTS)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per load (30)")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print only, leave BENCHMARKS.md"
    )
    args = parser.parse_args()
    if not (2 <= args.clients <= 64 and 0 < args.duration <= 3600):
        parser.error("--clients must be 2..64 and --duration in (0, 3600]")
    if make_url(args.postgres_url).get_backend_name() != "postgresql":
        parser.error("--postgres-url must be a postgresql+psycopg:// URL")
    return args


def _catalogue_and_model(args: argparse.Namespace) -> tuple[Path, Path]:
    data = args.work / "catalogue"
    if not (args.reuse and (data / "features.csv").exists()):
        shutil.rmtree(data, ignore_errors=True)
        options = ["--out", data, "--tracks", args.tracks, "--artists", args.artists, "--seed", 1]
        _run("demo-data", options)
    if args.model is not None:
        return data, args.model
    model = args.work / "model"
    if not (args.reuse and (model / "manifest.json").exists()):
        shutil.rmtree(model, ignore_errors=True)
        _run("train", ["--data", data, "--out", model, "--epochs", 20, "--seed", 0])
    return data, model


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


def _song_ids(database_url: str) -> np.ndarray:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return np.array(
                connection.execute(text("SELECT id FROM songs ORDER BY id")).scalars().all()
            )
    finally:
        engine.dispose()


def _start_replica(env: dict[str, str], work: Path, replica: int) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    log_path = work / f"replica-{replica}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*MUSICSIM, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,  # no stray .env is read
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    health = _wait_for_health(server, url, log_path)
    print(
        f"replica {replica}: {health['songs_indexed']:,} songs indexed, "
        f"/health after {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return url, server


def _report(
    results, *, machine: str, n_songs: int, args: argparse.Namespace, import_seconds: float
) -> str:
    command = " ".join([".venv/bin/python bench/replicas.py", *_shown_arguments()])
    fma = (args.tracks, args.artists) == (FMA_TRACKS, FMA_ARTISTS)
    size = f" (FMA's {FMA_TRACKS:,} tracks less those without features)" if fma else ""
    model = json.loads((Path(args.model or args.work / "model") / "manifest.json").read_text())
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` (at niceness "
        f"{os.nice(0)}) on {machine}, against the "
        f"throw-away PostgreSQL server of `scripts/postgres-cluster.sh` (loopback, fsync off).",
        f"Replicas are `musicsim serve` processes (uvicorn, one worker each) on 127.0.0.1, "
        f"one database holding a synthetic catalogue of {n_songs:,} songs{size}; "
        f"{args.clients} client threads (httpx, one keep-alive connection each) on the same "
        f"machine sent `GET /songs/{{id}}/similar?k=10` for random stored ids, spread evenly "
        f"over the replicas, for about {args.duration:.0f} s per row. Errors: non-200 "
        f"answers, answers with fewer than 10 songs, exceptions.",
        "",
        "| replicas | requests | requests/s | p50 ms | p99 ms | max ms | errors | load before |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for replicas, before, load in results:
        ms = np.asarray(load.latencies) * 1000.0
        p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"),) * 2
        worst = ms.max() if len(ms) else float("nan")
        lines.append(
            f"| {replicas} | {load.requests:,} | {load.requests / load.seconds:.1f} | "
            f"{p50:.1f} | {p99:.1f} | {worst:.1f} | {load.errors} | {before} |"
        )
    (_, _, one), (_, _, two) = results
    ratio = (two.requests / two.seconds) / (one.requests / one.seconds)
    lines += [
        "",
        f"Two replicas served {ratio:.2f}× the requests per second of one. Both replicas, "
        f"PostgreSQL and the clients share this machine's cores, so this is not the gain "
        f"of replicas on their own machines.",
        *_contention_note(results),
        f"`musicsim import` into PostgreSQL: {import_seconds:.0f} s. Model: "
        f"{model['training']['epochs']} epochs (a search costs the same whatever the weights).",
        "",
    ]
    return "\n".join(lines)


def _contention_note(results) -> list[str]:
    """A warning when other work was running: the figures then depend on it."""
    usable = len(os.sched_getaffinity(0))
    busiest = max(float(before.split(",")[0]) for _, before, _ in results)
    if busiest <= usable:
        return []
    return [
        f"Caution: other work kept this machine busy (1-minute load average up to "
        f"{busiest:.1f} on {usable} cores). The kernel shares the cores among all runnable "
        f"processes, so two replicas may also have won a larger share from that other work "
        f"than one did: the figures depend on that work, and the ratio may be inflated."
    ]


def _shown_arguments() -> list[str]:
    """This run's arguments, quoted, with the server's URL left as the variable the docs use."""
    shown, arguments = [], iter(sys.argv[1:])
    for argument in arguments:
        if argument.startswith("--postgres-url"):
            if "=" not in argument:
                next(arguments, None)
            shown.append('--postgres-url "$MUSICSIM_TEST_POSTGRES_URL"')
        else:
            shown.append(shlex.quote(argument))
    return shown


if __name__ == "__main__":
    main()
