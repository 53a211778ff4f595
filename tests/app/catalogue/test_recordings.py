"""The one same-recording rule: names folded alike, copies found as a brute force finds them."""

from __future__ import annotations

import numpy as np
import pytest

from app.catalogue.library import LibrarySongs, near_duplicates
from app.catalogue.recordings import (
    DUPLICATE_DISTANCE,
    distance_suspects,
    duplicate_pairs,
    first_distinct,
    normalised,
    recording_key,
)


def test_normalised_folds_case_accents_punctuation_and_spacing():
    assert normalised("  Héllo,  WORLD! ") == normalised("hello world") == "hello world"
    assert normalised("AC/DC") == "ac dc"
    assert normalised("!!!") is None and normalised(None) is None


def test_normalised_keeps_letters_of_every_script():
    assert normalised("東京 ラブ") == "東京 ラブ"
    assert normalised("ЧАЙКОВСКИЙ") == normalised("Чайковский") != normalised("Бородин")
    assert normalised("ブ") != normalised("フ")  # kana's voicing mark makes another letter
    assert normalised("東京") != normalised("大阪")


def test_a_recording_key_needs_both_a_title_and_an_artist():
    assert recording_key(title="Intro", artist="The Band") == recording_key(
        title="INTRO!", artist="the  band"
    )
    assert recording_key(title="Intro", artist=None) is None
    assert recording_key(title="...", artist="The Band") is None


def _brute_force_pairs(ids, keys, vectors):
    pairs = set()
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            same_key = keys[i] is not None and keys[i] == keys[j]
            close = np.linalg.norm(vectors[i] - vectors[j]) <= DUPLICATE_DISTANCE
            if same_key or close:
                pairs.add((min(ids[i], ids[j]), max(ids[i], ids[j])))
    return sorted(pairs)


@pytest.mark.parametrize("seed", range(5))
def test_duplicate_pairs_are_those_a_brute_force_finds(seed):
    rng = np.random.default_rng(seed)
    n = 60
    vectors = rng.normal(size=(n, 8))
    for a, b in rng.integers(0, n, size=(6, 2)):  # exact and almost exact copies
        vectors[b] = vectors[a] + rng.normal(scale=DUPLICATE_DISTANCE / 10, size=8)
    vectors[7] = vectors[3] + DUPLICATE_DISTANCE * 2  # close, yet not a copy
    keys = [f"k{rng.integers(0, 40)}" if rng.random() < 0.7 else None for _ in range(n)]
    ids = rng.permutation(1000)[:n]
    assert duplicate_pairs(ids=ids, keys=keys, vectors=vectors) == _brute_force_pairs(
        ids, keys, vectors
    )


def test_first_distinct_keeps_order_and_skips_copies_of_kept_or_taken_songs():
    vectors = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    keys = ["a", "b", "a", None, None, "c"]
    # row 1 copies row 0's vector, row 2 its key; row 4 is the taken song's vector
    taken = np.array([[3.0, 0.0]])
    rows = first_distinct(keys=keys, vectors=vectors, k=10, taken_keys=["c"], taken_vectors=taken)
    assert rows == [0, 3]
    assert first_distinct(keys=keys, vectors=vectors, k=2) == [0, 3]
    assert first_distinct(keys=keys, vectors=vectors, k=1) == [0]


def test_the_library_reports_copies_by_name_only_for_named_artists():
    features = np.random.default_rng(0).normal(size=(4, 518)).astype(np.float32)
    features[3] = features[0]  # the same file twice
    songs = LibrarySongs(
        ids=np.array([10, 11, 12, 13]),
        features=features,
        artist_ids=np.array([1, 1, 2, 3]),
        labelled=np.array([True, True, False, True]),
        titles=["Intro", "intro!", "Intro", "Other"],
        artist_names=["Band", "band", "unknown artist", "Someone"],
    )
    # 10/11 share a title and artist; 12 has no named artist; 13 has 10's features
    assert near_duplicates(songs) == [(10, 11), (10, 13)]


def _first_distinct_directly(keys, vectors, k, taken_keys, taken_vectors) -> list[int]:
    """The rule read literally: each candidate against every kept or taken one, ||a - b||."""
    used = {key for key in taken_keys if key is not None}
    kept = [np.asarray(v, np.float64) for v in taken_vectors]
    rows = []
    for row, key in enumerate(keys):
        vector = np.asarray(vectors[row], np.float64)
        if len(rows) == k or (key is not None and key in used):
            continue
        if any(np.sqrt(((vector - other) ** 2).sum()) <= DUPLICATE_DISTANCE for other in kept):
            continue
        rows.append(row)
        kept.append(vector)
        used.add(key) if key is not None else None
    return rows


def _planted_copies(rng, n: int, d: int, scale: float):
    """n vectors with copies planted just inside and just outside the copy distance,
    keys (half None), and one taken vector within the distance of row 3."""
    vectors = rng.normal(scale=scale, size=(n, d))
    for a, b in rng.integers(0, n, size=(12, 2)):
        if a != b:
            step = rng.normal(size=d)
            factor = rng.choice([0.0, 0.5, 0.999, 1.001, 1.5])
            vectors[b] = vectors[a] + step / np.linalg.norm(step) * DUPLICATE_DISTANCE * factor
    keys = [f"k{rng.integers(0, 60)}" if rng.random() < 0.5 else None for _ in range(n)]
    return vectors, keys, vectors[[3]] + DUPLICATE_DISTANCE / 2


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_first_distinct_finds_the_copies_a_direct_comparison_finds(scale):
    # Copies planted just inside and just outside the distance, among vectors large
    # enough (scale 1000) that |a|^2 + |b|^2 - 2ab alone would misjudge them.
    rng = np.random.default_rng(int(scale))
    n, d = 40, 518
    vectors, keys, taken = _planted_copies(rng, n, d, scale)
    for k in (5, 10, n):
        expected = _first_distinct_directly(keys, vectors, k, ["k1"], taken)
        found = first_distinct(
            keys=keys, vectors=vectors, k=k, taken_keys=["k1"], taken_vectors=taken
        )
        assert found == expected
    assert len(_first_distinct_directly(keys, vectors, n, [], [])) < n  # copies were planted


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_screened_by_distance_to_a_query_the_same_copies_are_found_reading_fewer_vectors(scale):
    rng = np.random.default_rng(7 + int(scale))
    n, d = 40, 518
    vectors, keys, taken = _planted_copies(rng, n, d, scale)
    query = rng.normal(scale=scale, size=d)
    order = np.argsort(np.linalg.norm(vectors - query, axis=1))  # nearest first, as answers
    vectors = vectors[order]
    keys = [keys[i] for i in order]
    distances = np.linalg.norm(vectors - query, axis=1)
    taken_distances = np.linalg.norm(taken - query, axis=1)
    read: list[int] = []

    def vectors_of(rows):
        read.extend(np.asarray(rows).tolist())
        return vectors[rows]

    for k in (5, 10, n):
        expected = _first_distinct_directly(keys, vectors, k, ["k1"], taken)
        found = first_distinct(
            keys=keys,
            vectors=vectors_of,
            k=k,
            taken_keys=["k1"],
            taken_vectors=taken,
            distances=distances,
            taken_distances=taken_distances,
        )
        assert found == expected
    assert 0 < len(set(read)) < n  # the planted copies were read, the rest were not


def test_distance_suspects_are_every_candidate_within_the_copy_distance_of_another():
    distances = np.array([1.0, 2.0, 2.0 + DUPLICATE_DISTANCE / 2, 5.0, 7.0, 9.0])
    assert distance_suspects(distances, None).tolist() == [1, 2]
    assert distance_suspects(distances, [7.0]).tolist() == [1, 2, 4]  # near a taken song
    assert distance_suspects(distances[:1], None).tolist() == []
