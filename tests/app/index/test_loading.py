"""Start-up loading: songs are read and embedded a chunk at a time, for any chunk size."""

import numpy as np
import pytest
from sqlalchemy.orm import Session

from app.db import open_database
from app.index.loading import embed_songs

N_SONGS = 23


class _CountingEmbed:
    """A stand-in model (two scaled columns) that records the size of each call."""

    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, features):
        self.sizes.append(len(features))
        return 2.0 * features[:, [0, 517]]


# Chunks of 1 song, 23 - 1, 23, 23 + 1, and several of 5 with a remainder of 3.
@pytest.mark.parametrize("chunk_songs", [1, N_SONGS - 1, N_SONGS, N_SONGS + 1, 5])
def test_songs_embedded_in_chunks_equal_their_features_embedded_at_once(
    database_url, catalogue, chunk_songs
):
    # Ids in a shuffled order: each chunk's rows must land where its ids are.
    rows = np.random.default_rng(1).choice(len(catalogue.track_ids), N_SONGS, replace=False)
    ids = catalogue.track_ids[rows]
    out = np.full((N_SONGS, 2), np.nan, dtype=np.float32)
    embed = _CountingEmbed()
    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            embed_songs(session, ids, embed, out, chunk_songs=chunk_songs)
    finally:
        engine.dispose()
    full, rest = divmod(N_SONGS, chunk_songs)
    assert embed.sizes == [chunk_songs] * full + ([rest] if rest else [])
    np.testing.assert_array_equal(out, 2.0 * catalogue.features[rows][:, [0, 517]])


def test_neighbourhoods_are_persisted_when_the_service_scoring_needs_them_and_reused(
    database_url, tmp_path
):
    from app.index.cache import EmbeddingCache
    from app.index.loading import build_index
    from training.evaluation.scoring import Scoring

    embed = _CountingEmbed()
    cache = EmbeddingCache(tmp_path / "cache")
    engine = open_database(database_url)

    def start(scoring):
        with Session(engine) as session:
            return build_index(session, embed, 2, cache=cache, model_sha256="m", scoring=scoring)

    try:
        plain = start(Scoring(k=5))  # l2: computed on first need, so nothing is saved
        assert not plain.has_neighbourhoods
        assert not list((tmp_path / "cache").rglob("neighbourhoods-*.npy"))
        scaled = start(Scoring("local-scaling", k=5))
        assert scaled.has_neighbourhoods
        (saved,) = (tmp_path / "cache").rglob("neighbourhoods-*.npy")
        np.testing.assert_array_equal(np.load(saved), scaled.table)
        np.save(saved, np.load(saved) + 1.0)  # a marker: the next start must read this file
        again = start(Scoring("local-scaling", k=5))
        np.testing.assert_array_equal(again.table, scaled.table + 1.0)
    finally:
        engine.dispose()
