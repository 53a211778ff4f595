"""Merge `musicsim compare --out` folders run in parallel (e.g. one per seed) into one.

    python bench/merge_comparisons.py --out docs/comparison/main runs/seed0 runs/seed1 ...
    python bench/merge_comparisons.py --out sweep --names a,b --seeds 0,1,2 runs/main* runs/sweep*

Concatenates their records (optionally only some configurations and seeds: a
run is deterministic given its seed, so a full-size run of one comparison is
the full-size point of a sweep), recomputes the summary (mean ± sample std over all
seeds) and redraws the figures, exactly as one `musicsim compare` run would.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.experiments.compare import Comparison, summary_markdown
from training.experiments.figures import plot_metrics, plot_size_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--names", help="Comma-separated configurations to keep (default all)")
    parser.add_argument("--seeds", help="Comma-separated seeds to keep (default all)")
    args = parser.parse_args()
    names = set(args.names.split(",")) if args.names else None
    seeds = {int(s) for s in args.seeds.split(",")} if args.seeds else None
    merged = Comparison()
    for folder in args.folders:
        for record in json.loads((folder / "comparison.json").read_text())["records"]:
            if (names is None or record["name"] in names) and (
                seeds is None or record["seed"] in seeds
            ):
                merged.records.append(record)
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
        plot_size_sweep(
            summary,
            path=args.out / "comparison-size-sweep-map.png",
            metric="mean_average_precision",
        )
    print(summary_markdown(summary))


if __name__ == "__main__":
    main()
