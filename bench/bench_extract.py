"""Time FMA feature extraction on the real clips and record it in BENCHMARKS.md.

    .venv/bin/python bench/bench_extract.py               # measure, print, update the file
    .venv/bin/python bench/bench_extract.py --repeats 5 --no-write

Each clip's middle 30 s is decoded (timed on its own), then analysed by
training.audio.extract_features `--repeats` times; a clip's figure is its median
run. Clips shorter than 30 s are left out, so every figure is for 30 s of audio.
The clips are 22,050 Hz; the same excerpts resampled to 44,100 Hz (the rate of
FMA's MP3s) are timed too, since the STFT and CQT cost grows with the samples.
The first call, which pays for librosa's lazy imports, is timed apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import librosa
import numpy as np
from benchmarks_doc import BENCHMARKS, write_section

from training.audio.recipe import EXCERPT_SECONDS, decode, extract_features

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DIR = ROOT.parent / "shared" / "data" / "audio"
SECTION = "## Feature extraction"


def main() -> None:
    args = _arguments()
    clips = sorted(args.clips.glob("*.ogg"))
    if not clips:
        sys.exit(f"no .ogg clips in {args.clips}")
    warm_up = _first_call_seconds(clips[0])
    rows = _measure(clips, repeats=args.repeats)
    text = _report(rows, warm_up=warm_up, repeats=args.repeats)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        print(f"updated {BENCHMARKS}", file=sys.stderr)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=AUDIO_DIR, help="folder of .ogg clips")
    parser.add_argument("--repeats", type=int, default=3, help="runs per clip (median kept)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args()


def _first_call_seconds(path: Path) -> float:
    signal, sr = decode(path)
    start = time.perf_counter()
    extract_features(signal=signal, sr=sr)
    return time.perf_counter() - start


def _measure(clips: list[Path], *, repeats: int) -> list[dict]:
    """One row per full-length clip: decode and extraction seconds at 22.05 and 44.1 kHz."""
    rows = []
    for path in clips:
        start = time.perf_counter()
        signal, sr = decode(path)
        decode_s = time.perf_counter() - start
        if len(signal) < EXCERPT_SECONDS * sr:
            continue  # shorter than a 30 s clip: not comparable
        hi_rate = librosa.resample(signal, orig_sr=sr, target_sr=44_100)
        rows.append(
            {
                "clip": path.stem,
                "decode": decode_s,
                "native": _median_seconds(signal, sr, repeats),
                "sr": sr,
                "44k": _median_seconds(hi_rate, 44_100, repeats),
            }
        )
    return rows


def _median_seconds(signal: np.ndarray, sr: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        extract_features(signal=signal, sr=sr)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    versions = f"Python {platform.python_version()}, librosa {librosa.__version__}"
    return f"{model}, {usable} usable cores (load average at start {load}); {versions}"


def _report(rows: list[dict], *, warm_up: float, repeats: int) -> str:
    def summary(key: str) -> str:
        values = [r[key] for r in rows]
        return f"{statistics.mean(values):.3f} | {min(values):.3f} | {max(values):.3f}"

    command = " ".join([".venv/bin/python", "bench/bench_extract.py", *sys.argv[1:]])
    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}` on {_machine()}.",
        f"Seconds per 30-second clip, one process, median of {repeats} runs per clip, "
        f"over {len(rows)} real clips (`shared/data/audio`, those of 30 s or more).",
        "",
        "| step | mean | min | max |",
        "|---|---|---|---|",
        f"| decode the middle 30 s (OGG Vorbis) | {summary('decode')} |",
        f"| extract_features, 22,050 Hz (the clips' rate) | {summary('native')} |",
        f"| extract_features, 44,100 Hz (FMA's MP3 rate; resampled copies) | {summary('44k')} |",
        "",
        f"The first call in a process also pays for librosa's lazy imports: "
        f"{warm_up:.1f} s here (a service should make one call at start-up).",
        "",
        "| clip | decode | extract 22.05 kHz | extract 44.1 kHz |",
        "|---|---|---|---|",
        *(
            f"| {r['clip']} | {r['decode']:.3f} | {r['native']:.3f} | {r['44k']:.3f} |"
            for r in rows
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
