"""Measure song paths and mixes on the demo catalogue; write the table into docs/playlists.md.

    PYTHONPATH=. .venv/bin/python bench/playlists.py          # demo catalogue, 20-epoch model
    PYTHONPATH=. .venv/bin/python bench/playlists.py --tracks 3000 --pairs 20 --no-write
    PYTHONPATH=. .venv/bin/python bench/playlists.py --timing --tracks 3000 --epochs 5

`--timing` instead times the largest requests within the limits (a 200-song path with
max_per_artist=1, a 200-song radio, `best` from 50 examples with k=1000, `average` from
50 positives with k=1000 and max_per_artist=1, diversity 0.3 with k=200), each over
HTTP in process, median wall-clock and CPU seconds (all of the process's threads) of
`--repeats` requests after a warm-up, with the machine's load average, and writes them
into the timing table of docs/playlists.md (`--label` names the row, e.g. the commit).

Builds the demo catalogue (`musicsim demo-data`'s defaults: 10,000 tracks by 1,530
artists, seed 0) in a temporary folder, trains the default triplet network on it
for `--epochs` epochs, imports it into a temporary SQLite file and asks the real
service (in process, through its HTTP API) for paths and mixes.

Paths, for random song pairs (a, b) and `--length` songs, against two baselines
built by brute force over the same embeddings:
- random walk: from a, each step a random one of the 10 nearest unused songs to the
  current song; b last.
- greedy chain: from a, each step the nearest unused song to the current song among
  those closer to b than it (the nearest unused song when none is); b last.
Reported: mean step distance, largest step distance (mean over paths of each path's
largest step), and mean distance of each inner song to the segment a-b.

Mixes, from `--mixes` random sets of 3 positive songs, k=20, strategy `average`:
artist entropy (Shannon, bits, of the artists within one mix, mean over mixes),
catalogue coverage (distinct songs over all mixes / catalogue size) and mean
distance to the query point (what diversity costs in relevance).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.catalogue.importing import import_catalogue
from app.config import Settings
from app.db import open_database
from app.main import create_app
from training.artefacts import load_bundle, save_bundle
from training.config import TrainConfig
from training.data.fma import load_catalogue
from training.data.synthetic.catalogue import write_demo_catalogue
from training.train import train_on_catalogue

DOC = Path(__file__).resolve().parents[1] / "docs" / "playlists.md"
BEGIN, END = "<!-- bench/playlists.py: begin -->", "<!-- bench/playlists.py: end -->"
TIMING_BEGIN = "<!-- bench/playlists.py --timing: begin -->"
TIMING_END = "<!-- bench/playlists.py --timing: end -->"


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_demo_catalogue(out_dir=folder / "demo", n_tracks=args.tracks, n_artists=args.artists)
        catalogue = load_catalogue(data_dir=folder / "demo")
        run = train_on_catalogue(catalogue, TrainConfig(epochs=args.epochs, seed=0))
        model = save_bundle(run, out_dir=folder / "model", data_fingerprint=catalogue.fingerprint)
        engine = open_database(f"sqlite:///{folder / 'musicsim.db'}")
        import_catalogue(engine, catalogue)
        engine.dispose()
        emb = load_bundle(model).embed(catalogue.features).astype(np.float64)
        settings = Settings(
            model_dir=model,
            database_url=f"sqlite:///{folder / 'musicsim.db'}",
            index_cache_dir=None,
            _env_file=None,
        )
        with TestClient(create_app(settings)) as client:
            if args.timing:
                text = _timing(client, catalogue, args)
            else:
                text = _report(client, catalogue, emb, args)
    print(text)
    if not args.no_write:
        if args.timing:
            _write_row(text, label=args.label)
        else:
            _write(text)
        print(f"updated {DOC}", file=sys.stderr)


TIMED = ("path 200", "radio 200", "best 50 ex, k=1000", "average 50 pos, k=1000", "diverse k=200")


def _timing(client: TestClient, catalogue, args) -> str:
    """One table row: seconds per request kind (TIMED's order)."""
    ids = [int(i) for i in catalogue.track_ids]
    a, b = ids[0], ids[len(ids) // 2]
    calls = {
        "path 200": lambda: client.get(
            f"/songs/{a}/path/{b}", params={"length": 200, "max_per_artist": 1}
        ),
        "radio 200": lambda: client.post("/radio", json={"seeds": ids[:3], "n": 200}),
        "best 50 ex, k=1000": lambda: client.post(
            "/recommend", json={"positive": ids[:50], "strategy": "best", "k": 1000}
        ),
        "average 50 pos, k=1000": lambda: client.post(
            "/recommend", json={"positive": ids[:50], "k": 1000, "max_per_artist": 1}
        ),
        "diverse k=200": lambda: client.post(
            "/recommend", json={"positive": ids[:3], "k": 200, "diversity": 0.3}
        ),
    }
    client.get(f"/songs/{a}/similar", params={"k": 10}).raise_for_status()  # warm-up
    cells = []
    for name in TIMED:
        wall, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            response = calls[name]()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)  # every thread of this process
            response.raise_for_status()
        cells.append(f"{np.median(wall):.2f} / {np.median(cpu):.2f}")
    load = os.getloadavg()[0]
    return f"| {len(ids):,} | {' | '.join(cells)} | {load:.1f} |"


def _write_row(row: str, *, label: str) -> None:
    """Put this row (labelled) into the timing table, replacing one with the same label+size."""
    text = DOC.read_text()
    start, end = text.index(TIMING_BEGIN) + len(TIMING_BEGIN), text.index(TIMING_END)
    lines = [line for line in text[start:end].splitlines() if line.startswith("|")]
    if len(lines) < 2:  # no table yet: header and alignment rows
        header = "| code | songs | " + " | ".join(TIMED) + " | load average |"
        lines = [header, "|---|---:|" + "---:|" * (len(TIMED) + 1)]
    new = f"| {label} {row}"
    prefix = new.split(" | ")[:2]
    lines = [line for line in lines if line.split(" | ")[:2] != prefix] + [new]
    DOC.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:])


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--artists", type=int, default=1_530)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the model")
    parser.add_argument("--pairs", type=int, default=50, help="random (a, b) paths measured")
    parser.add_argument("--length", type=int, default=12, help="songs per path")
    parser.add_argument("--mixes", type=int, default=100, help="random mixes measured")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--timing", action="store_true", help="time the largest requests")
    parser.add_argument("--label", default="this code", help="--timing: the row's name")
    parser.add_argument("--repeats", type=int, default=3, help="--timing: median of this many")
    return parser.parse_args()


def _report(client: TestClient, catalogue, emb: np.ndarray, args) -> str:
    rng = np.random.default_rng(0)
    ids = catalogue.track_ids
    row = {int(i): r for r, i in enumerate(ids)}
    pairs = [rng.choice(len(ids), 2, replace=False) for _ in range(args.pairs)]
    paths: dict[str, list[list[int]]] = {"service path": [], "service path, variety 1": []}
    for a, b in pairs:
        for name, extra in (("service path", {}), ("service path, variety 1", {"variety": 1})):
            response = client.get(
                f"/songs/{ids[a]}/path/{ids[b]}", params={"length": args.length, **extra}
            )
            response.raise_for_status()
            paths[name].append([row[s["id"]] for s in response.json()["results"]])
    paths["random walk (10-NN)"] = [_random_walk(emb, a, b, args.length, rng) for a, b in pairs]
    paths["greedy chain"] = [_greedy_chain(emb, a, b, args.length) for a, b in pairs]

    lines = [
        f"Demo catalogue: {len(ids):,} tracks by {catalogue.tracks['artist_id'].nunique():,} "
        f"artists; triplet network trained {args.epochs} epochs (seed 0); "
        f"{args.pairs} random pairs, {args.length} songs per path; "
        f"{args.mixes} mixes of 3 random positives, k = 20. "
        f"Python {platform.python_version()}. Command: `python bench/playlists.py "
        f"--tracks {args.tracks} --artists {args.artists} --epochs {args.epochs} "
        f"--pairs {args.pairs} --length {args.length} --mixes {args.mixes}`.",
        "",
        "| path | mean step | largest step | mean distance to the a-b segment |",
        "|---|---:|---:|---:|",
    ]
    for name, found in paths.items():
        steps = [np.linalg.norm(np.diff(emb[p], axis=0), axis=1) for p in found]
        off_line = [_segment_distance(emb[p[1:-1]], emb[p[0]], emb[p[-1]]) for p in found]
        lines.append(
            f"| {name} | {np.mean(np.concatenate(steps)):.3f} "
            f"| {np.mean([s.max() for s in steps]):.3f} "
            f"| {np.mean(np.concatenate(off_line)):.3f} |"
        )
    lines += [
        "",
        "| mix | artist entropy (bits) | distinct artists per mix | catalogue coverage "
        "| mean distance to query |",
        "|---|---:|---:|---:|---:|",
    ]
    seeds = [
        [int(ids[r]) for r in rng.choice(len(ids), 3, replace=False)] for _ in range(args.mixes)
    ]
    for name, extra in (
        ("plain (diversity 0)", {}),
        ("diversity 0.3", {"diversity": 0.3}),
        ("diversity 0.6", {"diversity": 0.6}),
        ("max_per_artist 1", {"max_per_artist": 1}),
    ):
        entropy, artists, seen, distance = [], [], set(), []
        for positive in seeds:
            response = client.post("/recommend", json={"positive": positive, "k": 20, **extra})
            response.raise_for_status()
            results = response.json()["results"]
            names = [r["artist"]["id"] for r in results]
            _, counts = np.unique(names, return_counts=True)
            p = counts / counts.sum()
            entropy.append(float(-(p * np.log2(p)).sum()))
            artists.append(len(counts))
            seen.update(r["id"] for r in results)
            query = emb[[row[s] for s in positive]].mean(axis=0)
            distance += [float(np.linalg.norm(emb[row[r["id"]]] - query)) for r in results]
        lines.append(
            f"| {name} | {np.mean(entropy):.2f} | {np.mean(artists):.1f} "
            f"| {len(seen) / len(ids):.1%} | {np.mean(distance):.3f} |"
        )
    return "\n".join(lines) + "\n"


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point to the segment a-b (its nearest point on it)."""
    ab = b - a
    t = np.clip((points - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _random_walk(emb, a, b, length, rng) -> list[int]:
    path, used = [a], {a, b}
    for _ in range(length - 2):
        d = np.linalg.norm(emb - emb[path[-1]], axis=1)
        d[list(used)] = np.inf
        step = int(rng.choice(np.argsort(d)[:10]))
        path.append(step)
        used.add(step)
    return [*path, b]


def _greedy_chain(emb, a, b, length) -> list[int]:
    path, used = [a], {a, b}
    to_b = np.linalg.norm(emb - emb[b], axis=1)
    for _ in range(length - 2):
        here = path[-1]
        d = np.linalg.norm(emb - emb[here], axis=1)
        d[list(used)] = np.inf
        closer = np.where(to_b < to_b[here], d, np.inf)
        step = int(np.argmin(closer if np.isfinite(closer).any() else d))
        path.append(step)
        used.add(step)
    return [*path, b]


def _write(table: str) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table + text[end:])


if __name__ == "__main__":
    main()
