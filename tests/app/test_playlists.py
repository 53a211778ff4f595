"""Playlist logic as properties over random catalogues, against direct re-implementations."""

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
    Ledger,
    Pool,
    Rules,
    TooFew,
    Track,
    mmr_select,
    near_any,
    normalised,
    radio,
    song_path,
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
)
def test_a_path_is_the_greedy_nearest_to_each_waypoint_or_says_how_many_fit(seed, n, length, cap):
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
