"""Shared fixtures: a small synthetic FMA-format catalogue, written once per session."""

import os
from pathlib import Path

import pytest

from training.data.synthetic.catalogue import write_demo_catalogue

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
