"""Optional parts of musicsim and the extra that installs each.

The core (`pip install musicsim`) serves a catalogue of features. Audio analysis,
training beyond the paper, figures, Dask, Milvus and PostgreSQL are extras,
imported only where they are used:

>>> librosa = require("librosa", extra="audio")   # MissingExtra names the pip command

`MissingExtra` is what a command or route reports to the user.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# What each extra is for, as the README and pyproject.toml name them.
EXTRAS: dict[str, str] = {
    "audio": "audio analysis (librosa, soundfile, mutagen)",
    "train": "LDA/NCA, online miners and report figures (scikit-learn, "
    "pytorch-metric-learning, matplotlib)",
    "dask": "extraction on a Dask cluster",
    "milvus": "the Milvus index backend",
    "postgres": "PostgreSQL as the database",
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message says which extra brings it."""

    def __init__(self, module: str, *, extra: str):
        self.module, self.extra = module, extra
        super().__init__(
            f"this needs {EXTRAS[extra]}, which is not installed (no module {module!r}): "
            f"pip install 'musicsim[{extra}]'"
        )


def require(module: str, *, extra: str) -> ModuleType:
    """Import an optional module, or raise MissingExtra naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but something it needs is broken: show that
        raise MissingExtra(module, extra=extra) from exc
