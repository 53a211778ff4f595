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


def test_neighbourhoods_are_persisted_when_computed_at_build_or_in_the_background_and_reused(
    database_url, tmp_path
):
    from app.index.cache import EmbeddingCache
    from app.index.loading import build_index
    from training.evaluation.scoring import Scoring

    embed = _CountingEmbed()
    engine = open_database(database_url)

    def start(scoring, folder="cache"):
        cache = EmbeddingCache(tmp_path / folder)
        with Session(engine) as session:
            return build_index(session, embed, 2, cache=cache, model_sha256="m", scoring=scoring)

    try:
        plain = start(Scoring(k=5))  # l2: nothing computed at build, so nothing saved
        assert not plain.has_neighbourhoods
        assert not list((tmp_path / "cache").rglob("neighbourhoods-*.npy"))
        plain.start_neighbourhoods()  # what the service's warm-up does
        assert plain.wait_for_neighbourhoods(timeout_s=120)
        (saved,) = (tmp_path / "cache").rglob("neighbourhoods-*.npy")
        np.testing.assert_array_equal(np.load(saved), plain.table)
        np.save(saved, np.load(saved) + 1.0)  # a marker: the next start must read this file
        scaled = start(Scoring("local-scaling", k=5))
        np.testing.assert_array_equal(scaled.table, plain.table + 1.0)
        eager = start(Scoring("local-scaling", k=5), folder="other-cache")  # computed at build
        (saved,) = (tmp_path / "other-cache").rglob("neighbourhoods-*.npy")
        np.testing.assert_array_equal(np.load(saved), eager.table)
        np.testing.assert_array_equal(eager.table, plain.table)
        # Songs removed before the build ends: the table no longer fits the cache entry.
        changed = start(Scoring(k=5), folder="third-cache")
        changed.remove(changed.ids()[:2])
        changed.start_neighbourhoods()
        assert changed.wait_for_neighbourhoods(timeout_s=120)
        assert not list((tmp_path / "third-cache").rglob("neighbourhoods-*.npy"))
    finally:
        engine.dispose()
