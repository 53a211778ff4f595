"""Shared fixtures: a small synthetic FMA-format catalogue, written once per session."""

import os
import sys
from pathlib import Path

import pytest

# One thread per test worker: pytest-xdist already runs one worker per core, and two
# workers each running torch, FAISS and BLAS on every core fight over them (a training
# epoch took about 3 times as long). Set before torch or FAISS loads; the servers and
# commands that tests start inherit it.
ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ONE_THREAD:
        os.environ.setdefault(variable, "1")
    if "torch" in sys.modules:  # imported before this file by a plugin: tell it directly
        sys.modules["torch"].set_num_threads(1)

from training.data.synthetic.catalogue import write_demo_catalogue  # noqa: E402 (numpy, after)

SMALL_TRACKS = 1500
SMALL_ARTISTS = 220


@pytest.fixture(scope="session")
def small_catalogue_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fma-small")
    write_demo_catalogue(out_dir=out, n_tracks=SMALL_TRACKS, n_artists=SMALL_ARTISTS, seed=3)
    return out


@pytest.fixture(scope="session", autouse=True)
def index_cache_outside_the_repository(tmp_path_factory):
    """Services that tests start without naming a cache folder persist into a temporary one,
    never into the checkout's data/index-cache (the default is relative to the cwd)."""
    previous = os.environ.get("MUSICSIM_INDEX_CACHE_DIR")
    os.environ["MUSICSIM_INDEX_CACHE_DIR"] = str(tmp_path_factory.mktemp("index-cache"))
    yield
    if previous is None:
        os.environ.pop("MUSICSIM_INDEX_CACHE_DIR", None)
    else:
        os.environ["MUSICSIM_INDEX_CACHE_DIR"] = previous
