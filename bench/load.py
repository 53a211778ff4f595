"""Load-test GET /songs/{id}/similar on an FMA-sized catalogue and record it in BENCHMARKS.md.

    .venv/bin/python bench/load.py                        # build everything, measure, write
    .venv/bin/python bench/load.py --reuse                # reuse the catalogue and model
    .venv/bin/python bench/load.py --model models/fma --clients 4 --duration 60 --no-write

Steps: a synthetic catalogue of FMA's size (`musicsim demo-data --tracks 106574
--artists 16341`; `--reuse` keeps one already in `--work`), a model (`--model`, else
one trained with `musicsim train --epochs 20`: a short training, enough for a load
test since the service's cost does not depend on the weights' quality), a fresh
SQLite database (`musicsim import`), then `musicsim serve` on 127.0.0.1 with
MUSICSIM_* variables. `--clients` threads (httpx, one connection each) send
GET /songs/{id}/similar?k=10 for uniformly random stored ids for `--duration`
seconds (and at most `--max-requests` requests). Reported: requests per second,
p50/p99/max latency, errors (non-200 answers and exceptions) and the server's peak
resident memory (VmHWM). The clients run on the same machine as the server and
share its cores, so the figures are for client and server together.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from benchmarks_doc import BENCHMARKS, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Load: GET /songs/{id}/similar"
# The environment's own `musicsim` command, next to this interpreter.
# This checkout's code (`python -m`, with PYTHONPATH), not whichever the venv's script imports.
MUSICSIM = [sys.executable, "-m", "app.cli"]
FMA_TRACKS, FMA_ARTISTS = 106_574, 16_341
START_TIMEOUT_S = 900.0  # bound on waiting for /health: the whole catalogue is embedded first
REQUEST_TIMEOUT_S = 30.0


def main() -> None:
    args = _arguments()
    args.work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    timings: dict[str, float] = {}

    data = args.work / "catalogue"
    if args.reuse and (data / "features.csv").exists():
        notes.append(f"catalogue reused from `{_rel(data)}`")
    else:
        shutil.rmtree(data, ignore_errors=True)
        timings["demo-data"] = _run(
            "demo-data",
            [
                "--out",
                data,
                "--tracks",
                args.tracks,
                "--artists",
                args.artists,
                "--seed",
                args.seed,
            ],
        )

    if args.model is not None:
        model = args.model
        notes.append(f"model `{_rel(model)}` given")
    else:
        model = args.work / "model"
        if args.reuse and (model / "manifest.json").exists():
            notes.append(f"model reused from `{_rel(model)}`")
        else:
            shutil.rmtree(model, ignore_errors=True)
            timings["train"] = _run(
                "train", ["--data", data, "--out", model, "--epochs", args.epochs, "--seed", 0]
            )
        epochs = json.loads((model / "manifest.json").read_text())["training"]["epochs"]
        notes.append(
            f"model trained by this script for {epochs} epochs: a short training, enough "
            "for a load test (a search costs the same whatever the weights)"
        )

    database = args.work / "load.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env |= {"MUSICSIM_DATABASE_URL": f"sqlite:///{database}", "MUSICSIM_MODEL_DIR": str(model)}
    timings["import"] = _run("import", ["--data", data], env=env)
    song_ids = _song_ids(database)

    port = args.port or _free_port()
    log_path = args.work / "server.log"
    server = None
    try:
        with log_path.open("wb") as log:
            started = time.perf_counter()
            server = subprocess.Popen(
                [*MUSICSIM, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=args.work,  # no stray .env is read
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        health = _wait_for_health(server, url, log_path)
        timings["serve: start-up until /health"] = time.perf_counter() - started
        if health["songs_indexed"] != len(song_ids):
            sys.exit(f"/health says {health['songs_indexed']} songs, the database {len(song_ids)}")
        rss_idle = _proc_status_kib(server.pid, "VmRSS")
        machine = _machine()  # the load average just before the load
        print(f"loading for {args.duration:.0f} s with {args.clients} clients", file=sys.stderr)
        load = _load(
            [url], song_ids, clients=args.clients, duration=args.duration, cap=args.max_requests
        )
        peak_kib = _proc_status_kib(server.pid, "VmHWM")
    finally:
        if server is not None:
            _stop(server)

    text = _report(
        load,
        machine=machine,
        n_songs=len(song_ids),
        fma_size=(args.tracks, args.artists) == (FMA_TRACKS, FMA_ARTISTS),
        clients=args.clients,
        rss_idle_kib=rss_idle,
        peak_kib=peak_kib,
        timings=timings,
        notes=notes,
    )
    print(text)
    if args.write:
        write_section(SECTION, text)
        print(f"updated {BENCHMARKS}", file=sys.stderr)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=ROOT / "data" / "load-bench", help="folder for everything"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the catalogue and model already in --work"
    )
    parser.add_argument("--model", type=Path, help="bundle to serve (else one is trained)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs when training (20)")
    parser.add_argument("--tracks", type=int, default=FMA_TRACKS)
    parser.add_argument("--artists", type=int, default=FMA_ARTISTS)
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic catalogue")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="stop after this many requests"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print only, leave BENCHMARKS.md"
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.duration <= 3600):
        parser.error("--clients must be 1..64 and --duration in (0, 3600]")
    return args


def _run(command: str, options: list, *, env: dict[str, str] | None = None) -> float:
    """Run one `musicsim` command (its progress goes to our stderr); returns its seconds."""
    argv = [*MUSICSIM, command, *(str(o) for o in options)]
    print(f"$ {shlex.join(['musicsim', *argv[len(MUSICSIM) :]])}", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def _song_ids(database: Path) -> np.ndarray:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return np.array([r[0] for r in connection.execute("SELECT id FROM songs ORDER BY id")])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(server: subprocess.Popen, url: str, log_path: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}; see {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{url}/health", timeout=5.0)
            if response.status_code == 200:
                return response.json()
        time.sleep(0.5)
    sys.exit(f"the server did not answer /health within {START_TIMEOUT_S:.0f} s; see {log_path}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


def _proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Load:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, of 200 answers
    statuses: dict[int, int] = field(default_factory=dict)  # non-200 status -> count
    exceptions: dict[str, int] = field(default_factory=dict)  # exception type -> count

    @property
    def errors(self) -> int:
        return sum(self.statuses.values()) + sum(self.exceptions.values())

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors


def _load(
    urls: list[str], song_ids: np.ndarray, *, clients: int, duration: float, cap: int
) -> Load:
    """Client thread i sends to urls[i % len(urls)]: several servers share the clients evenly."""
    load = Load()
    lock = threading.Lock()
    issued = [0]
    deadline = time.perf_counter() + duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        exceptions: dict[str, int] = {}
        with httpx.Client(base_url=urls[seed % len(urls)], timeout=REQUEST_TIMEOUT_S) as http:
            while time.perf_counter() < deadline:
                with lock:
                    if issued[0] >= cap:
                        break
                    issued[0] += 1
                song = int(song_ids[rng.randrange(len(song_ids))])
                started = time.perf_counter()
                try:
                    response = http.get(f"/songs/{song}/similar", params={"k": 10})
                except httpx.HTTPError as exc:
                    name = type(exc).__name__
                    exceptions[name] = exceptions.get(name, 0) + 1
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code == 200 and len(response.json()["results"]) == 10:
                    latencies.append(elapsed)
                else:
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        with lock:
            load.latencies.extend(latencies)
            for key, n in statuses.items():
                load.statuses[key] = load.statuses.get(key, 0) + n
            for key, n in exceptions.items():
                load.exceptions[key] = load.exceptions.get(key, 0) + n

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + REQUEST_TIMEOUT_S + 30)
    load.seconds = time.perf_counter() - started
    return load


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {usable} usable cores of {os.cpu_count()} "
        f"(load average before the load {load}); "
        f"Python {platform.python_version()}"
    )


def _report(
    load: Load,
    *,
    machine: str,
    n_songs: int,
    fma_size: bool,
    clients: int,
    rss_idle_kib: int,
    peak_kib: int,
    timings: dict[str, float],
    notes: list[str],
) -> str:
    ms = np.asarray(load.latencies) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"), float("nan"))
    worst = ms.max() if len(ms) else float("nan")
    errors = ", ".join(
        [f"{n} × HTTP {s}" for s, n in sorted(load.statuses.items())]
        + [f"{n} × {e}" for e, n in sorted(load.exceptions.items())]
    )
    command = shlex.join([".venv/bin/python", "bench/load.py", *sys.argv[1:]])
    size = f" (FMA's {FMA_TRACKS:,} tracks less those without features)" if fma_size else ""
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` on {machine}.",
        f"One `musicsim serve` process (uvicorn, one worker) on 127.0.0.1 over a synthetic "
        f"catalogue of {n_songs:,} songs{size} in SQLite; {clients} client threads "
        f"(httpx, one keep-alive connection each) on the same machine sent "
        f"`GET /songs/{{id}}/similar?k=10` for random stored ids for {load.seconds:.1f} s. "
        "Latency is per request as a client saw it; an error is a non-200 answer, "
        "an answer with fewer than 10 songs, or an exception.",
        "",
        "| requests | requests/s | p50 ms | p99 ms | max ms | errors | server peak RSS (VmHWM) |",
        "|---|---|---|---|---|---|---|",
        f"| {load.requests:,} | {load.requests / load.seconds:.1f} | {p50:.1f} | {p99:.1f} | "
        f"{worst:.1f} | {load.errors}{f' ({errors})' if errors else ''} | "
        f"{peak_kib / 1024:,.0f} MiB |",
        "",
        f"The server's resident memory after start-up, before the load: "
        f"{rss_idle_kib / 1024:,.0f} MiB.",
    ]
    if timings:
        steps = "; ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
        lines.append(f"Preparation: {steps}.")
    lines.extend(f"Note: {note}." for note in notes)
    lines.append("")
    return "\n".join(lines)


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return str(path)


if __name__ == "__main__":
    main()
