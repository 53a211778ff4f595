"""Shared fixtures: a small synthetic FMA-format catalogue, written once per session."""

from pathlib import Path

import pytest

from training.synthetic import write_demo_catalogue

SMALL_TRACKS = 1500
SMALL_ARTISTS = 220


@pytest.fixture(scope="session")
def small_catalogue_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fma-small")
    write_demo_catalogue(out_dir=out, n_tracks=SMALL_TRACKS, n_artists=SMALL_ARTISTS, seed=3)
    return out
