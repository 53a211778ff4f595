"""Playlist logic as properties over random catalogues, against direct re-implementations."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex
from app.index.protocol import SongFilter
from app.playlists import (
    DUPLICATE_DISTANCE,
    SCOPE_CHUNK,
    Ledger,
    Pool,
    Rules,
    TooFew,
    Track,
    mmr_select,
    near_any,
    normalised,
    radio,
    recommend,
    rough_squared_distances,
    song_path,
    title_key,
    waypoints,
    write_m3u,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_catalogue(seed, n, *, n_artists=6, dim=4, n_copies=3):
    """Songs with few artists and albums, some titles repeated and some exact copies."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim))
    tracks = []
    for i in range(n):
        artist = int(rng.integers(0, n_artists))
        tracks.append(
            Track(
                song_id=100 + i,
                artist_id=artist,
                album=f"Album {int(rng.integers(0, 3))}" if rng.random() < 0.8 else None,
                duration=float(rng.integers(60, 400)) if rng.random() < 0.9 else None,
                title=f"Song {int(rng.integers(0, n // 2 + 1))}",
                artist_name=f"Artist {artist}",
            )
        )
    for _ in range(min(n_copies, n // 2)):  # re-imports: the same vector under a new id
        a, b = rng.choice(n, 2, replace=False)
        emb[b] = emb[a]
    return tracks, emb


def key(t):
    return (normalised(t.title), normalised(t.artist_name))


def may_join(t, e, chosen, rules, taken_ids, taken_keys, taken_emb):
    """The rules, written out one by one for a single candidate."""
    if t.song_id in taken_ids or t.song_id in [c.song_id for c, _ in chosen]:
        return False
    if key(t) in taken_keys | {key(c) for c, _ in chosen}:
        return False
    if any(
        np.linalg.norm(e - x) <= DUPLICATE_DISTANCE for x in [*taken_emb, *(x for _, x in chosen)]
    ):
        return False
    if rules.min_duration is not None and not (
        t.duration is not None and t.duration >= rules.min_duration
    ):
        return False
    if rules.max_duration is not None and not (
        t.duration is not None and t.duration <= rules.max_duration
    ):
        return False
    if t.artist_id in rules.banned_artists:
        return False
    same_artist = sum(c.artist_id == t.artist_id for c, _ in chosen)
    if rules.max_per_artist is not None and same_artist >= rules.max_per_artist:
        return False
    if rules.max_per_album is not None and t.album is not None:
        same = sum(c.artist_id == t.artist_id and c.album == t.album for c, _ in chosen)
        if same >= rules.max_per_album:
            return False
    return True


rule_sets = st.builds(
    Rules,
    max_per_artist=st.none() | st.integers(1, 3),
    max_per_album=st.none() | st.integers(1, 2),
    min_duration=st.none() | st.just(100.0),
    max_duration=st.none() | st.just(300.0),
    banned_artists=st.frozensets(st.integers(0, 5), max_size=2),
)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 40),
    k=st.integers(1, 25),
    rules=rule_sets,
    lam=st.sampled_from([1.0, 0.8, 0.5, 0.0]),
    n_taken=st.integers(0, 4),
)
def test_mmr_keeps_every_rule_and_stops_only_when_nothing_may_join(seed, n, k, rules, lam, n_taken):
    tracks, emb = random_catalogue(seed, n)
    relevance = -np.random.default_rng(seed + 1).random(n)
    taken = tracks[:n_taken]
    ledger = Ledger(rules)
    ledger.take(
        ids=[t.song_id for t in taken],
        titles=[f"{normalised(t.title)}\x00{normalised(t.artist_name)}" for t in taken],
        embeddings=list(emb[:n_taken]),
    )
    rows = mmr_select(pool=Pool.of(tracks, emb), relevance=relevance, k=k, lam=lam, ledger=ledger)
    taken_ids, taken_keys = {t.song_id for t in taken}, {key(t) for t in taken}
    chosen = []
    for r in rows:  # each pick was allowed when it was made
        assert may_join(tracks[r], emb[r], chosen, rules, taken_ids, taken_keys, emb[:n_taken])
        chosen.append((tracks[r], emb[r]))
    assert len(rows) <= k
    if len(rows) < k:  # it stopped early only because nothing else may join
        assert not any(
            may_join(t, e, chosen, rules, taken_ids, taken_keys, emb[:n_taken])
            for t, e in zip(tracks, emb, strict=True)
        )


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), k=st.integers(1, 25), rules=rule_sets)
def test_mmr_with_lambda_one_is_the_relevance_order_of_allowed_songs(seed, n, k, rules):
    tracks, emb = random_catalogue(seed, n)
    relevance = -np.random.default_rng(seed + 1).random(n)
    rows = mmr_select(
        pool=Pool.of(tracks, emb), relevance=relevance, k=k, lam=1.0, ledger=Ledger(rules)
    )
    expected, chosen = [], []
    for r in np.argsort(-relevance, kind="stable"):
        if len(expected) < k and may_join(tracks[r], emb[r], chosen, rules, set(), set(), []):
            expected.append(int(r))
            chosen.append((tracks[r], emb[r]))
    assert rows == expected


def textbook_mmr(emb, relevance, k, lam):
    chosen = []
    while len(chosen) < min(k, len(emb)):
        scores = {
            i: lam * relevance[i]
            - (1 - lam) * max((-math.dist(emb[i], emb[j]) for j in chosen), default=0.0)
            for i in range(len(emb))
            if i not in chosen
        }
        chosen.append(max(scores, key=lambda i: (scores[i], -i)))
    return chosen


@SETTINGS
@given(
    seed=st.integers(0, 10_000), n=st.integers(1, 30), k=st.integers(1, 12), lam=st.floats(0.0, 1.0)
)
def test_mmr_without_rules_matches_a_textbook_implementation(seed, n, k, lam):
    rng = np.random.default_rng(seed)
    emb, relevance = rng.standard_normal((n, 3)), -rng.random(n) * 3
    tracks = [Track(song_id=i, artist_id=i) for i in range(n)]  # no titles: no title duplicates
    rows = mmr_select(
        pool=Pool.of(tracks, emb), relevance=relevance, k=k, lam=lam, ledger=Ledger(Rules())
    )
    assert rows == textbook_mmr(emb, relevance, k, lam)


def faiss_over(tracks, emb):
    rows = SongRows.from_columns(
        [t.song_id for t in tracks],
        [t.artist_id for t in tracks],
        [None] * len(tracks),
        [None] * len(tracks),
        [None] * len(tracks),
    )
    index = FaissSongIndex.from_embeddings(rows, emb.astype(np.float32))
    by_id = {t.song_id: t for t in tracks}
    return index, lambda ids: {i: by_id[i] for i in ids if i in by_id}


def brute_path(tracks, emb, a, b, length, cap):
    """Greedy by definition: for each waypoint scan all songs in distance order."""
    e32 = emb.astype(np.float32).astype(np.float64)
    chosen = [(tracks[a], e32[a]), (tracks[b], e32[b])]
    path = [a]
    for i in range(1, length - 1):
        target = e32[a] + i / (length - 1) * (e32[b] - e32[a])
        d = np.linalg.norm(e32 - target, axis=1)
        rules = Rules(max_per_artist=cap)
        pick = next(
            (
                int(r)
                for r in np.argsort(d, kind="stable")
                if may_join(tracks[r], e32[r], chosen, rules, set(), set(), [])
            ),
            None,
        )
        if pick is None:
            return None, len(path) + 1
        chosen.append((tracks[pick], e32[pick]))
        path.append(pick)
    return path + [b], length


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(3, 40),
    length=st.integers(2, 30),
    cap=st.none() | st.integers(1, 3),
    scan=st.booleans(),
)
def test_a_path_is_the_greedy_nearest_to_each_waypoint_or_says_how_many_fit(
    seed, n, length, cap, scan
):
    """Both ways of stepping: the whole catalogue as arrays (scan) and one search per step."""
    tracks, emb = random_catalogue(seed, n, n_copies=0)
    index, describe = faiss_over(tracks, emb)
    a, b = 0, n - 1
    if cap is not None and tracks[a].artist_id == tracks[b].artist_id and cap < 2:
        cap = 2
    expected, possible = brute_path(tracks, emb, a, b, length, cap)
    args = dict(
        index=index,
        describe=describe,
        start=tracks[a],
        end=tracks[b],
        length=length,
        where=SongFilter(),
        rules=Rules(max_per_artist=cap),
        max_pool=64,
        scan_most=None if scan else 0,
    )
    if expected is None:
        with pytest.raises(TooFew) as failure:
            song_path(**args)
        assert failure.value.possible == possible
        assert f"only {possible} songs" in str(failure.value)
        return
    got = [n.song_id for n in song_path(**args)]
    assert got == [tracks[r].song_id for r in expected]
    assert got[0] == tracks[a].song_id and got[-1] == tracks[b].song_id
    assert len(set(got)) == length


def test_waypoints_are_evenly_spaced_and_variety_is_seeded():
    a, b = np.zeros(3), np.array([3.0, 0.0, 6.0])
    np.testing.assert_allclose(waypoints(a, b, 4), [[1, 0, 2], [2, 0, 4]])
    moved = waypoints(a, b, 4, variety=0.5, seed=1)
    np.testing.assert_allclose(moved, waypoints(a, b, 4, variety=0.5, seed=1))
    assert not np.allclose(moved, waypoints(a, b, 4, variety=0.5, seed=2))
    step = np.linalg.norm(b - a) / 3
    np.testing.assert_allclose(np.linalg.norm(moved - waypoints(a, b, 4), axis=1), 0.5 * step)
    assert waypoints(a, b, 2).shape == (0, 3)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 40),
    gap=st.integers(0, 6),
    n_next=st.integers(1, 20),
    n_history=st.integers(0, 8),
    weight=st.floats(0, 1),
)
def test_radio_never_repeats_an_artist_inside_the_gap(seed, n, gap, n_next, n_history, weight):
    tracks, emb = random_catalogue(seed, n, n_artists=8)
    index, describe = faiss_over(tracks, emb)
    history = tracks[1 : 1 + n_history]
    ledger = Ledger(Rules(artist_gap=gap))
    ledger.take(
        ids=[tracks[0].song_id] + [t.song_id for t in history],
        artists=[t.artist_id for t in history],
    )
    last = emb[history[-1].song_id - 100] if history else emb[0]
    got = radio(
        index=index,
        describe=describe,
        seeds=emb[:1],
        last=last,
        n=n_next,
        where=SongFilter(),
        ledger=ledger,
        seed_weight=weight,
        max_pool=64,
    )
    ids = [g.song_id for g in got]
    assert not set(ids) & ({tracks[0].song_id} | {t.song_id for t in history})
    artists = [t.artist_id for t in history] + [describe([i])[i].artist_id for i in ids]
    for i in range(len(history), len(artists)):
        assert artists[i] not in artists[max(0, i - gap) : i]
    if len(ids) < n_next:  # it ran out: nobody left whose artist is outside the gap
        used = {tracks[0].song_id, *(t.song_id for t in history), *ids}
        recent = set(artists[-gap:]) if gap else set()
        picked = [tracks[i - 100] for i in ids]  # only picks were given titles and vectors
        left = [
            t
            for t in tracks
            if t.song_id not in used
            and t.artist_id not in recent
            and key(t) not in {key(p) for p in picked}
            and all(
                np.linalg.norm(emb[t.song_id - 100] - emb[p.song_id - 100]) > DUPLICATE_DISTANCE
                for p in picked
            )
        ]
        assert not left


def test_m3u_entries_have_a_duration_a_label_and_the_audio_url():
    text = write_m3u(
        [(7, 201.6, "Ann", "One"), (9, None, "Bo\nb", "Two")], base_url="http://host:8000/"
    )
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXTINF:202,Ann - One",
        "http://host:8000/songs/7/audio",
        "#EXTINF:-1,Bo b - Two",
        "http://host:8000/songs/9/audio",
    ]


def test_normalised_titles_fold_case_accents_and_punctuation():
    assert normalised("  Héllo,  WORLD! ") == normalised("hello world") == "hello world"
    assert normalised("!!!") is None and normalised(None) is None


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    m=st.integers(0, 30),
    radius=st.sampled_from([DUPLICATE_DISTANCE, 0.5, 1.5]),
)
def test_near_any_agrees_with_every_pairwise_distance(seed, n, m, radius):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    if n and m:  # some exact copies and some just inside or outside the radius
        a[: n // 3] = b[rng.integers(0, m, n // 3)]
        a[n // 3 : n // 2] = b[rng.integers(0, m, n // 2 - n // 3)] + radius * 0.99 / np.sqrt(3)
    expected = [any(math.dist(x, y) <= radius for y in b) for x in a]
    assert near_any(a, b, radius).tolist() == expected


def brute_radio(tracks, emb, *, seeds, history, n, gap, weight, rules):
    """Radio by its definition: each next song scans every song in distance order."""
    e32 = emb.astype(np.float32).astype(np.float64)
    taken_ids = {t.song_id for t in [tracks[s] for s in seeds] + [tracks[h] for h in history]}
    taken_keys = {key(tracks[s]) for s in seeds} | {key(tracks[h]) for h in history}
    artists = [tracks[h].artist_id for h in history]
    played = e32[history[-1]] if history else e32[seeds[-1]]
    centre = e32[seeds].mean(axis=0)
    chosen, out = [], []
    for _ in range(n):
        target = (1 - weight) * played + weight * centre
        d = np.sqrt(((e32 - target) ** 2).sum(axis=1))
        recent = set(artists[-gap:]) if gap else set()
        pick = next(
            (
                int(r)
                for r in np.argsort(d, kind="stable")
                if tracks[r].artist_id not in recent
                and may_join(tracks[r], e32[r], chosen, rules, taken_ids, taken_keys, e32[seeds])
            ),
            None,
        )
        if pick is None:
            break
        chosen.append((tracks[pick], e32[pick]))
        artists.append(tracks[pick].artist_id)
        out.append(pick)
        played = e32[pick]
    return out


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 40),
    gap=st.integers(0, 4),
    n_next=st.integers(1, 20),
    n_history=st.integers(0, 6),
    weight=st.floats(0, 1),
    rules=rule_sets,
    scan=st.booleans(),
)
def test_radio_equals_a_scan_of_every_song_for_each_next_song(
    seed, n, gap, n_next, n_history, weight, rules, scan
):
    tracks, emb = random_catalogue(seed, n, n_artists=8)
    index, describe = faiss_over(tracks, emb)
    seeds, history = [0], list(range(1, min(1 + n_history, n)))
    rules = dataclasses.replace(rules, artist_gap=gap)
    ledger = Ledger(rules)
    ledger.take(  # what the route takes: seeds with their vectors, the history by title
        ids=[tracks[r].song_id for r in seeds + history],
        titles=[title_key(tracks[r]) for r in seeds + history],
        embeddings=list(emb[seeds].astype(np.float32).astype(np.float64)),
        artists=[tracks[r].artist_id for r in history],
    )
    e32 = emb.astype(np.float32).astype(np.float64)
    got = radio(
        index=index,
        describe=describe,
        seeds=e32[seeds],
        last=e32[history[-1]] if history else e32[seeds[-1]],
        n=n_next,
        where=SongFilter(),
        ledger=ledger,
        seed_weight=weight,
        max_pool=64,
        scan_most=None if scan else 0,
    )
    expected = brute_radio(
        tracks, emb, seeds=seeds, history=history, n=n_next, gap=gap, weight=weight, rules=rules
    )
    assert [g.song_id for g in got] == [tracks[r].song_id for r in expected]


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 40),
    n_pos=st.integers(1, 3),
    n_neg=st.integers(0, 2),
    k=st.integers(1, 25),
    rules=rule_sets,
    scan=st.booleans(),
)
def test_best_equals_a_brute_force_scoring_of_every_song_under_the_rules(
    seed, n, n_pos, n_neg, k, rules, scan
):
    tracks, emb = random_catalogue(seed, n)
    index, describe = faiss_over(tracks, emb)
    e32 = emb.astype(np.float32).astype(np.float64)
    examples = list(range(min(n_pos + n_neg, n - 1)))
    pos, neg = examples[:n_pos], examples[n_pos:]
    taken = Ledger(rules)
    taken.take(
        ids=[tracks[r].song_id for r in examples],
        titles=[title_key(tracks[r]) for r in examples],
        embeddings=list(e32[examples]),
    )
    got = recommend(
        index=index,
        describe=describe,
        positives=e32[pos],
        negatives=e32[neg] if neg else np.empty((0, emb.shape[1])),
        strategy="best",
        k=k,
        where=SongFilter(),
        taken=taken,
        max_pool=256,  # without a scan each example reaches 256 / 5 songs: every one
        scan_most=None if scan else 0,
    )
    d = np.sqrt(((e32[:, None, :] - e32[None, examples, :]) ** 2).sum(axis=2))
    score = -d[:, : len(pos)].min(axis=1) + (d[:, len(pos) :].min(axis=1) if neg else 0.0)
    chosen, expected = [], []
    taken_ids = {tracks[r].song_id for r in examples}
    taken_keys = {key(tracks[r]) for r in examples}
    for r in np.argsort(-score, kind="stable"):
        if len(expected) < k and may_join(
            tracks[r], e32[r], chosen, rules, taken_ids, taken_keys, e32[examples]
        ):
            chosen.append((tracks[r], e32[r]))
            expected.append(tracks[r].song_id)
    assert [g.song_id for g in got] == expected
    np.testing.assert_allclose(
        [g.distance for g in got],
        [d[r - 100, : len(pos)].min() for r in expected],
        rtol=1e-6,  # searching the index rounds the examples to float32
    )


def test_a_path_longer_than_one_block_of_waypoints_is_still_the_greedy_path():
    """Waypoints are measured in blocks of SCOPE_CHUNK: a path spanning blocks stays exact."""
    tracks, emb = random_catalogue(5, 3 * SCOPE_CHUNK, n_artists=40, n_copies=0)
    index, describe = faiss_over(tracks, emb)
    length = 2 * SCOPE_CHUNK + 7
    expected, _ = brute_path(tracks, emb, 0, len(tracks) - 1, length, None)
    got = song_path(
        index=index,
        describe=describe,
        start=tracks[0],
        end=tracks[-1],
        length=length,
        where=SongFilter(),
        rules=Rules(),
        max_pool=1024,
    )
    assert [g.song_id for g in got] == [tracks[r].song_id for r in expected]


class Stale:
    """An index whose ids() still lists a song it no longer holds (deleted meanwhile)."""

    def __init__(self, inner, gone):
        self.inner, self.gone = inner, gone

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def __contains__(self, song_id):
        return song_id in self.inner

    def ids(self):
        return np.append(self.inner.ids(), self.gone)


def test_a_song_deleted_while_a_radio_reads_the_index_is_skipped_not_an_error():
    tracks, emb = random_catalogue(9, 30, n_artists=30, n_copies=0)
    index, describe = faiss_over(tracks, emb)
    e32 = emb.astype(np.float32).astype(np.float64)
    nearest = int(np.argsort(np.linalg.norm(e32 - e32[0], axis=1))[1])
    gone = tracks[nearest].song_id  # what the radio would play first
    index.remove(np.array([gone]))
    got = radio(
        index=Stale(index, gone),
        describe=describe,
        seeds=e32[:1],
        last=e32[0],
        n=5,
        where=SongFilter(),
        ledger=Ledger(Rules()),
        seed_weight=0.0,
    )
    assert len(got) == 5 and gone not in {g.song_id for g in got}


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), dim=st.sampled_from([3, 64, 518]))
def test_rough_distances_stay_within_their_stated_error(seed, n, dim):
    rng = np.random.default_rng(seed)
    offset = rng.standard_normal(dim) * 20  # far from the origin, as trained embeddings are
    emb = offset + rng.standard_normal((n, dim))
    targets = offset + rng.standard_normal((5, dim)) * rng.uniform(0.01, 3)
    pool = Pool.of([Track(song_id=i, artist_id=i) for i in range(n)], emb)
    rough, error = rough_squared_distances(targets, pool)
    exact = ((targets[:, None, :] - emb[None, :, :]) ** 2).sum(axis=2)
    assert (np.abs(rough - exact) <= error[:, None]).all()
    assert (error < 1e-2 * exact.min(axis=1)).all()  # tight enough to leave few candidates


def test_a_filter_no_song_passes_gives_an_empty_radio_and_a_path_of_its_ends_only():
    tracks, emb = random_catalogue(2, 12)
    index, describe = faiss_over(tracks, emb)
    nowhere = SongFilter(genre="Polka")  # no song has a genre
    got = radio(
        index=index,
        describe=describe,
        seeds=emb[:1],
        last=emb[0],
        n=3,
        where=nowhere,
        ledger=Ledger(Rules()),
        seed_weight=0.5,
    )
    assert got == []
    ends = {"start": tracks[0], "end": tracks[1], "where": nowhere, "rules": Rules()}
    assert len(song_path(index=index, describe=describe, length=2, **ends)) == 2
    with pytest.raises(TooFew, match="only 2 songs"):
        song_path(index=index, describe=describe, length=3, **ends)
