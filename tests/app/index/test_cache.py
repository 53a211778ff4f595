"""Start-up reuses persisted embeddings only when model and catalogue are unchanged."""

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.catalogue.reads import catalogue_version, read_index_rows
from app.catalogue.writes import NewSong, add_song
from app.db import open_database
from app.index.cache import SPOT_CHECK_SONGS, EmbeddingCache
from app.index.kinds import IndexSpec
from app.index.loading import build_index


class CountingEmbed:
    """The bundle's embed, counting how many songs it was asked to embed."""

    def __init__(self, bundle):
        self.bundle, self.songs = bundle, 0

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.songs += len(features)
        return self.bundle.embed(features)


@pytest.fixture
def engine(settings):
    engine = open_database(settings.database_url)
    yield engine
    engine.dispose()


def start(engine, bundle, cache, *, spec=None, model_sha256=None):
    """What the service does at start-up; returns (index, songs embedded)."""
    embed = CountingEmbed(bundle)
    with Session(engine) as session:
        index = build_index(
            session,
            embed,
            bundle.embedding_dim,
            spec=spec,
            cache=cache,
            model_sha256=model_sha256 or bundle.manifest_sha256,
        )
    return index, embed.songs


def neighbours(index, queries):
    return [[n.song_id for n in hits] for hits in index.search(queries, k=10)]


def test_a_second_start_embeds_only_the_spot_check(engine, bundle, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    first, embedded_first = start(engine, bundle, cache)
    second, embedded_second = start(engine, bundle, cache)
    assert embedded_first == len(first)
    assert embedded_second == SPOT_CHECK_SONGS
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    queries = bundle.embed(features[:20])
    assert neighbours(second, queries) == neighbours(first, queries)
    assert np.array_equal(second.embedding_of(int(rows.ids[5])), queries[5])


def test_any_change_to_songs_features_invalidates_the_cache(engine, bundle, catalogue, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    _, embedded = start(engine, bundle, cache)
    some_id = int(catalogue.tracks.index[0])
    with engine.begin() as connection:  # behind the application's back: triggers still see it
        connection.execute(
            text("UPDATE songs SET features = :f WHERE id = :id"),
            {"f": np.ones(518, dtype=np.float32).tobytes(), "id": some_id},
        )
    index, embedded_after = start(engine, bundle, cache)
    assert embedded_after == embedded == len(index)
    expected = bundle.embed(np.ones((1, 518), dtype=np.float32))[0]
    assert index.embedding_of(some_id) == pytest.approx(expected, abs=1e-6)


def test_the_catalogue_version_changes_with_features_only(engine, catalogue):
    some_id = int(catalogue.tracks.index[0])
    with Session(engine) as session:
        before = catalogue_version(session)
        session.execute(text("UPDATE songs SET title = 'x' WHERE id = :id"), {"id": some_id})
        session.commit()
        assert catalogue_version(session) == before  # a title does not change embeddings
        add_song(session, NewSong("t", "A new one", np.zeros(518, np.float32)))
        after_insert = catalogue_version(session)
        session.execute(text("DELETE FROM songs WHERE source = 'cold-start'"))
        session.commit()
        after_delete = catalogue_version(session)
    assert len({before, after_insert, after_delete}) == 3


def test_another_model_misses(engine, bundle, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    index, _ = start(engine, bundle, cache)
    _, embedded = start(engine, bundle, cache, model_sha256="another model")
    assert embedded == len(index)


def test_a_cache_that_does_not_match_its_fingerprint_is_recomputed(engine, bundle, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    first, _ = start(engine, bundle, cache)
    with Session(engine) as session:
        _, features = read_index_rows(session)
    queries = bundle.embed(features[:20])
    # Answered before the file is overwritten in place: `first` scans it memory-mapped.
    expected = neighbours(first, queries)
    (entry,) = (p for p in cache.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stored = np.load(entry / "embeddings.npy")
    np.save(entry / "embeddings.npy", stored[::-1].copy())  # right shape, wrong rows
    index, embedded = start(engine, bundle, cache)
    assert embedded == SPOT_CHECK_SONGS + len(index)
    assert neighbours(index, queries) == expected


def test_an_approximate_index_is_persisted_and_reused(engine, bundle, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    spec = IndexSpec(kind="hnsw")
    first, _ = start(engine, bundle, cache, spec=spec)
    (saved,) = cache.root.glob("*/index-*.faiss")
    written = saved.stat().st_mtime_ns
    second, embedded = start(engine, bundle, cache, spec=spec)
    assert embedded == SPOT_CHECK_SONGS and saved.stat().st_mtime_ns == written
    assert second.kind == "hnsw" and second.faiss_index.ntotal == len(first)
    with Session(engine) as session:
        _, features = read_index_rows(session)
    queries = bundle.embed(features[:20])
    assert neighbours(second, queries) == neighbours(first, queries)


def test_without_a_cache_folder_nothing_is_written(engine, bundle, tmp_path):
    index, embedded = start(engine, bundle, None)
    assert embedded == len(index) and not any(tmp_path.glob("**/*.npy"))
