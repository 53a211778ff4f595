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
