"""Merge `musicsim compare --out` folders run in parallel (e.g. one per seed) into one.

    python bench/merge_comparisons.py --out docs/comparison/main runs/seed0 runs/seed1 ...

Concatenates their records, recomputes the summary (mean ± sample std over all
seeds) and redraws the figures, exactly as one `musicsim compare` run would.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.compare import Comparison, summary_markdown
from training.figures import plot_metrics, plot_size_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    merged = Comparison()
    for folder in args.folders:
        merged.records += json.loads((folder / "comparison.json").read_text())["records"]
    seen = [(r["name"], r["seed"], str(r["train_artists"])) for r in merged.records]
    if len(set(seen)) != len(seen):
        raise SystemExit("the folders repeat a (configuration, seed, size): not merging")
    summary = merged.summary()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(merged.as_json(), indent=2) + "\n")
    (args.out / "summary.md").write_text(summary_markdown(summary))
    plot_metrics(summary, path=args.out / "comparison-metrics.png")
    if len({r["train_artists"] for r in merged.records}) > 1:
        plot_size_sweep(summary, path=args.out / "comparison-size-sweep.png")
    print(summary_markdown(summary))


if __name__ == "__main__":
    main()
