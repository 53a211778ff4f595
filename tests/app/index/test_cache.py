"""Start-up reuses persisted embeddings only when model and catalogue are unchanged,
and only when they are whole: a damaged entry is rebuilt, never served or fatal."""

import hashlib
import json
import logging

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.catalogue.reads import catalogue_version, read_index_rows
from app.catalogue.writes import NewSong, add_song
from app.db import open_database
from app.index.cache import SPOT_CHECK_SONGS, EmbeddingCache, RowsFile, _non_finite_rows
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


def rewrite_checksum(entry):
    """Record the entry's current embeddings.npy as if it had been written that way."""
    manifest = json.loads((entry / "manifest.json").read_text())
    digest = hashlib.sha256((entry / "embeddings.npy").read_bytes()).hexdigest()
    manifest["embeddings_sha256"] = digest
    (entry / "manifest.json").write_text(json.dumps(manifest))


def the_entry(cache):
    (entry,) = (p for p in cache.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return entry


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
    # Before the damage: `first` memory-maps the very file overwritten below.
    expected = neighbours(first, queries)
    (entry,) = (p for p in cache.root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stored = np.load(entry / "embeddings.npy")
    np.save(entry / "embeddings.npy", stored[::-1].copy())  # right shape, wrong rows
    rewrite_checksum(entry)  # whole and consistent: only the spot check can tell
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


def exact_neighbours(engine, bundle, index):
    """Each song's 5 nearest by brute force on fresh embeddings, next to the index's."""
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    fresh = bundle.embed(features)
    picked = np.arange(0, len(rows), 50)
    d = ((fresh[picked, None, :] - fresh[None, :, :]) ** 2).sum(-1)
    expected = [[int(rows.ids[j]) for j in np.argsort(row, kind="stable")[:5]] for row in d]
    got = [[n.song_id for n in hits] for hits in index.search(fresh[picked], k=5)]
    return got, expected


@pytest.mark.parametrize(
    "damage",
    ["truncate embeddings", "break manifest", "empty manifest", "manifest not an object"],
)
def test_a_damaged_entry_is_rebuilt_at_start_with_a_warning(
    engine, bundle, tmp_path, caplog, damage
):
    cache = EmbeddingCache(tmp_path / "cache")
    first, _ = start(engine, bundle, cache)
    entry = the_entry(cache)
    embeddings, manifest = entry / "embeddings.npy", entry / "manifest.json"
    if damage == "truncate embeddings":  # a half-written file, as after a power cut
        embeddings.write_bytes(embeddings.read_bytes()[: embeddings.stat().st_size // 2])
    elif damage == "break manifest":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "empty manifest":
        manifest.write_text("")
    else:
        manifest.write_text("[1, 2, 3]")
    with caplog.at_level(logging.WARNING, logger="musicsim.cache"):
        index, embedded = start(engine, bundle, cache)
    assert embedded == len(index) == len(first)  # recomputed, not reused and not fatal
    assert "discarding persisted embeddings" in caplog.text
    got, expected = exact_neighbours(engine, bundle, index)
    assert got == expected
    _, embedded_again = start(engine, bundle, cache)  # and the rebuilt entry is reused
    assert embedded_again == SPOT_CHECK_SONGS


@pytest.mark.parametrize("checksum", ["stale", "rewritten"])
def test_every_other_row_zeroed_is_detected(engine, bundle, tmp_path, caplog, checksum):
    cache = EmbeddingCache(tmp_path / "cache")
    start(engine, bundle, cache)
    entry = the_entry(cache)
    stored = np.load(entry / "embeddings.npy")
    # Every other row, but none that a check always drawing seed 0's rows would look at.
    always_checked = np.random.default_rng(0).choice(len(stored), SPOT_CHECK_SONGS, replace=False)
    zeroed = np.setdiff1d(np.arange(0, len(stored), 2), always_checked)
    stored[zeroed] = 0.0
    np.save(entry / "embeddings.npy", stored)
    if checksum == "rewritten":  # consistent on disk: the random spot check must catch it
        rewrite_checksum(entry)
    with caplog.at_level(logging.WARNING):
        index, embedded = start(engine, bundle, cache)
    assert embedded >= len(index)  # everything re-embedded
    got, expected = exact_neighbours(engine, bundle, index)
    assert got == expected


def test_embeddings_off_in_their_last_bit_are_recomputed(engine, bundle, tmp_path, caplog):
    # What float32 batching used to leave (issue 16 item 8): close, but a song posted with
    # its own features would then be at a distance of ~1e-7 from itself, not 0.
    cache = EmbeddingCache(tmp_path / "cache")
    start(engine, bundle, cache)
    entry = the_entry(cache)
    stored = np.load(entry / "embeddings.npy")  # a copy in memory, in index order
    np.save(entry / "embeddings.npy", np.nextafter(stored, np.float32(np.inf)))
    rewrite_checksum(entry)
    with caplog.at_level(logging.WARNING, logger="musicsim.index"):
        index, embedded = start(engine, bundle, cache)
    assert embedded >= len(index) and "differ from the model's output" in caplog.text
    np.testing.assert_array_equal(index.embeddings_of(index.ids()), stored)


def test_a_nan_row_is_detected_even_with_a_matching_checksum(engine, bundle, tmp_path, caplog):
    cache = EmbeddingCache(tmp_path / "cache")
    start(engine, bundle, cache)
    entry = the_entry(cache)
    stored = np.load(entry / "embeddings.npy")
    stored[17, 3] = np.nan
    np.save(entry / "embeddings.npy", stored)
    rewrite_checksum(entry)
    with caplog.at_level(logging.WARNING, logger="musicsim.cache"):
        index, embedded = start(engine, bundle, cache)
    assert embedded == len(index) and "1 row(s) are not finite (first: 17)" in caplog.text
    assert np.isfinite(
        index.search(bundle.embed(np.zeros((1, 518), np.float32)), k=5)[0][0].distance
    )


def test_the_spot_check_looks_at_different_songs_at_each_start(engine, bundle, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    start(engine, bundle, cache)
    seen = []

    class Recording(CountingEmbed):
        def __call__(self, features):
            seen.append(features.tobytes())
            return super().__call__(features)

    for _ in range(2):
        with Session(engine) as session:
            build_index(
                session,
                Recording(bundle),
                bundle.embedding_dim,
                cache=cache,
                model_sha256=bundle.manifest_sha256,
            )
    assert len(seen) == 2 and seen[0] != seen[1]  # 64 of 1,500 songs drawn twice alike: ~0


def test_an_unusable_cache_folder_serves_without_persistence(engine, bundle, tmp_path, caplog):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("in the way")
    with caplog.at_level(logging.WARNING):
        index, embedded = start(engine, bundle, EmbeddingCache(not_a_folder / "cache"))
    assert embedded == len(index) > 0
    assert "cannot use the index cache" in caplog.text and str(not_a_folder) in caplog.text


def test_a_damaged_approximate_index_file_is_rebuilt(engine, bundle, tmp_path, caplog):
    cache = EmbeddingCache(tmp_path / "cache")
    spec = IndexSpec(kind="hnsw")
    start(engine, bundle, cache, spec=spec)
    (saved,) = cache.root.glob("*/index-*.faiss")
    saved.write_bytes(saved.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="musicsim.cache"):
        index, _ = start(engine, bundle, cache, spec=spec)
    assert "does not match its recorded SHA-256" in caplog.text
    assert index.faiss_index.ntotal == len(index)


def test_non_finite_rows_are_found_in_every_chunk_of_the_file(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(1_000, 7)).astype(np.float32)
    bad = [0, 99, 100, 101, 555, 999]  # both ends, and on both sides of a chunk boundary
    for row, value in zip(bad, [np.nan, np.inf, -np.inf, np.nan, np.inf, np.nan], strict=True):
        embeddings[row, rng.integers(7)] = value
    np.save(tmp_path / "embeddings.npy", embeddings)
    mapped = np.load(tmp_path / "embeddings.npy", mmap_mode="r")
    for chunk in (1, 100, 333, 5_000):
        assert _non_finite_rows(mapped, chunk=chunk).tolist() == bad


def test_a_rows_file_is_the_npy_file_of_the_rows_written_into_it(tmp_path):
    rows = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    with RowsFile(tmp_path / "rows.npy", rows.shape) as out:
        out[30:50] = rows[30:50]  # in any order, in pieces
        out[0:30] = rows[0:30].astype(np.float64)  # cast to float32 on the way
        with pytest.raises(ValueError, match="need shape"):
            out[0:2] = rows[:3]
    read = np.load(tmp_path / "rows.npy")
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, rows)
