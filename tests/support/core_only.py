"""Run Python as if only musicsim's core were installed: the optional extras cannot import.

    python tests/support/core_only.py -c "import app.main"     # like `python -c`
    python tests/support/core_only.py -m app.cli --help

Every top-level module of the extras (pyproject.toml's audio, train, dask, milvus
and postgres) is set to None in sys.modules: importing one then fails with
ModuleNotFoundError and importlib.util.find_spec reports it absent, as after a
fresh `pip install musicsim`, without a second virtual environment.
"""

from __future__ import annotations

import runpy
import sys

EXTRA_MODULES = frozenset(
    {
        "librosa", "soundfile", "mutagen", "sklearn", "scipy", "matplotlib", "dask",
        "distributed", "pymilvus", "milvus_lite", "pytorch_metric_learning", "psycopg",
    }
)  # fmt: skip


def main(argv: list[str]) -> None:
    sys.modules.update(dict.fromkeys(EXTRA_MODULES))
    if argv[:1] == ["-c"]:
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<core-only>", "exec"), {"__name__": "__main__"})
    elif argv[:1] == ["-m"]:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        raise SystemExit("usage: core_only.py -c CODE | -m MODULE [ARGS]")


if __name__ == "__main__":
    main(sys.argv[1:])
