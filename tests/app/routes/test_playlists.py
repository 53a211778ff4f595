"""Mixes, paths and radio over HTTP, against brute-force numpy over the same embeddings."""

import math
import shutil
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.spatial.distance import pdist
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from app.playlists import DUPLICATE_DISTANCE, normalised


@pytest.fixture(scope="module")
def shared(sqlite_template, bundle_dir, tmp_path_factory):
    """One service (SQLite) for the many read-only queries of the property checks."""
    folder = tmp_path_factory.mktemp("playlists")
    shutil.copyfile(sqlite_template, folder / "musicsim.db")
    settings = Settings(
        model_dir=bundle_dir,
        database_url=f"sqlite:///{folder / 'musicsim.db'}",
        index_cache_dir=folder / "index-cache",
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def on_milvus(sqlite_template, bundle_dir, tmp_path_factory, milvus_lite_uri):
    """The same service on the Milvus backend (Milvus Lite): few cases, each is slow."""
    folder = tmp_path_factory.mktemp("playlists-milvus")
    shutil.copyfile(sqlite_template, folder / "musicsim.db")
    settings = Settings(
        model_dir=bundle_dir,
        database_url=f"sqlite:///{folder / 'musicsim.db'}",
        index_cache_dir=folder / "index-cache",
        index_backend="milvus",
        milvus_uri=milvus_lite_uri,
        milvus_collection=f"test_{uuid.uuid4().hex}",
        scoring_warmup=False,  # its brute-force searches would compete with the tests'
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def service_on(request, backend):
    """The module's read-only service on this index backend."""
    return request.getfixturevalue({"faiss": "shared", "milvus": "on_milvus"}[backend])


@pytest.fixture(scope="module")
def ref(catalogue, bundle):
    """The reference: every song's embedding and metadata, by row."""
    tracks = catalogue.tracks
    return {
        "ids": catalogue.track_ids,
        "row": {int(i): r for r, i in enumerate(catalogue.track_ids)},
        "emb": bundle.embed(catalogue.features).astype(np.float64),
        "artist": tracks["artist_id"].to_numpy(np.int64),
        "album": tracks["album"].to_numpy(object),
        "duration": tracks["duration"].to_numpy(np.float64),
        "title": [
            (normalised(t), normalised(a))
            for t, a in zip(tracks["title"], tracks["artist_name"], strict=True)
        ],
        "genre": tracks["genre"].to_numpy(object),
        "names": list(zip(tracks["artist_name"], tracks["title"], strict=True)),
    }


def dist(ref, vector):
    return np.sqrt(((ref["emb"] - vector) ** 2).sum(axis=1))


def check_list(
    ref,
    results,
    *,
    k,
    seeds=(),
    exclude=(),
    max_per_artist=None,
    max_per_album=None,
    min_duration=None,
    max_duration=None,
    seed_vectors=(),
):
    """Every rule a list must keep, checked from the reference data alone."""
    ids = [r["id"] for r in results]
    assert len(ids) <= k
    assert len(set(ids)) == len(ids), "a song twice"
    assert not set(ids) & set(seeds), "a seed returned"
    assert not set(ids) & set(exclude), "an excluded song returned"
    rows = [ref["row"][i] for i in ids]
    artists = [int(ref["artist"][r]) for r in rows]
    if max_per_artist is not None:
        assert max(np.unique(artists, return_counts=True)[1], default=0) <= max_per_artist
    if max_per_album is not None:
        albums = [(a, normalised(ref["album"][r])) for a, r in zip(artists, rows, strict=True)]
        albums = [x for x in albums if x[1] is not None]
        assert max(np.unique([str(x) for x in albums], return_counts=True)[1], default=0) <= (
            max_per_album
        )
    for r in rows:
        if min_duration is not None:
            assert ref["duration"][r] >= min_duration
        if max_duration is not None:
            assert ref["duration"][r] <= max_duration
    keys = [ref["title"][r] for r in rows]
    keys = [key for key in keys if None not in key]
    assert len(set(keys)) == len(keys), "the same title and artist twice"
    seed_keys = {ref["title"][ref["row"][s]] for s in seeds}
    assert not seed_keys & set(keys), "a duplicate of a seed returned"
    # every pair's distance, each computed directly (a k x k x dim broadcast took seconds
    # for a list of 1,000)
    assert (pdist(ref["emb"][rows]) > DUPLICATE_DISTANCE).all(), "near-duplicates both returned"
    for vector in seed_vectors:
        assert (dist(ref, vector)[rows] > DUPLICATE_DISTANCE).all()


# ---- POST /recommend


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_average_of_one_positive_equals_the_similar_songs(client, catalogue):
    song = int(catalogue.track_ids[17])
    similar = client.get(f"/songs/{song}/similar", params={"k": 12}).json()["results"]
    mix = client.post("/recommend", json={"positive": [song], "k": 12})
    assert mix.status_code == 200, mix.text
    got = mix.json()["results"]
    assert [r["id"] for r in got] == [r["id"] for r in similar]
    np.testing.assert_allclose(
        [r["distance"] for r in got], [r["distance"] for r in similar], rtol=1e-6
    )
    # l2 is the default scoring, so the similarity of the same songs is the same too
    np.testing.assert_allclose(
        [r["similarity"] for r in got], [r["similarity"] for r in similar], atol=1e-9
    )


def test_every_list_answer_carries_a_similarity_that_falls_as_the_distance_grows(shared, ref):
    a, b = int(ref["ids"][3]), int(ref["ids"][40])
    answers = [
        shared.post("/recommend", json={"positive": [a, b], "k": 8}),
        shared.get(f"/songs/{a}/path/{b}", params={"length": 6}),
        shared.post("/radio", json={"seeds": [a], "n": 6}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        items = answer.json()["results"]
        assert items and all(0.0 <= r["similarity"] <= 1.0 for r in items)
        by_distance = sorted(items, key=lambda r: r["distance"])
        similarity = [r["similarity"] for r in by_distance]
        assert similarity == sorted(similarity, reverse=True)


def test_results_carry_album_and_duration(shared, ref):
    song = int(ref["ids"][5])
    got = shared.post("/recommend", json={"positive": [song], "k": 5}).json()["results"]
    for r in got:
        row = ref["row"][r["id"]]
        assert r["album"] == ref["album"][row]
        assert r["duration"] == pytest.approx(ref["duration"][row])


def test_average_with_negatives_is_nearest_to_the_pushed_point(shared, ref):
    pos, neg = [int(ref["ids"][i]) for i in (3, 40)], [int(ref["ids"][900])]
    body = {"positive": pos, "negative": neg, "k": 10}
    got = [r["id"] for r in shared.post("/recommend", json=body).json()["results"]]
    mean_pos = ref["emb"][[ref["row"][p] for p in pos]].mean(0)
    query = 2 * mean_pos - ref["emb"][ref["row"][neg[0]]]
    d = dist(ref, query)
    d[[ref["row"][s] for s in pos + neg]] = np.inf
    expected = [int(ref["ids"][i]) for i in np.argsort(d, kind="stable")[:10]]
    assert len(set(got) ^ set(expected)) <= 2  # float32 ties may swap at the edge
    assert got[:5] == expected[:5]


def best_scores(ref, positives, negatives):
    """Brute force: for every song, -min distance to a positive + min distance to a negative."""
    score = -np.min([dist(ref, p) for p in positives], axis=0)
    if len(negatives):
        score += np.min([dist(ref, n) for n in negatives], axis=0)
    return score


@pytest.mark.parametrize(
    ("n_neg", "backend"), [(0, "faiss"), (1, "faiss"), (3, "faiss"), (1, "milvus")]
)
def test_best_equals_a_brute_force_scoring_of_every_song(request, ref, n_neg, backend):
    shared = service_on(request, backend)
    rng = np.random.default_rng(n_neg)
    rows = rng.choice(len(ref["ids"]), 3 + n_neg, replace=False)
    pos, neg = [int(ref["ids"][r]) for r in rows[:3]], [int(ref["ids"][r]) for r in rows[3:]]
    body = {"positive": pos, "negative": neg, "strategy": "best", "k": 15}
    got = [r["id"] for r in shared.post("/recommend", json=body).json()["results"]]
    score = best_scores(ref, ref["emb"][rows[:3]], ref["emb"][rows[3:]])
    score[rows] = -np.inf
    expected = [int(ref["ids"][i]) for i in np.argsort(-score, kind="stable")[:15]]
    assert len(got) == 15
    assert len(set(got) ^ set(expected)) <= 2
    gaps = np.sort(-score)[:16]
    if np.diff(gaps).min() > 1e-4:  # no near-ties: the order itself must agree
        assert got == expected


def test_best_accepts_posted_features_and_never_returns_their_song(shared, ref, catalogue):
    row = 60
    features = catalogue.features[row].astype(float).tolist()
    body = {"positive": [{"features": features}], "strategy": "best", "k": 5}
    got = [r["id"] for r in shared.post("/recommend", json=body).json()["results"]]
    assert int(ref["ids"][row]) not in got  # distance 0 to the posted seed: a duplicate
    d = dist(ref, ref["emb"][row])
    d[row] = np.inf
    assert got[0] == int(ref["ids"][np.argmin(d)])


def direct_mmr(ids, emb, relevance, k, lam):
    """A textbook MMR loop, written without the service's incremental bookkeeping."""
    chosen = []
    for _ in range(min(k, len(ids))):
        best, best_score = None, -math.inf
        for i in range(len(ids)):
            if i in chosen:
                continue
            redundancy = max((-float(np.linalg.norm(emb[i] - emb[j])) for j in chosen), default=0.0)
            score = lam * relevance[i] - (1 - lam) * redundancy
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return [int(ids[i]) for i in chosen]


@pytest.mark.parametrize("diversity", [0.0, 0.3, 0.7])
def test_diversity_is_mmr_over_a_pool_of_5k(shared, ref, diversity):
    song, k = int(ref["ids"][222]), 8
    body = {"positive": [song], "k": k, "diversity": diversity}
    got = [r["id"] for r in shared.post("/recommend", json=body).json()["results"]]
    d = dist(ref, ref["emb"][ref["row"][song]])
    order = [i for i in np.argsort(d, kind="stable")[: 5 * k + 1] if ref["ids"][i] != song]
    expected = direct_mmr(ref["ids"][order], ref["emb"][order], -d[order], k, 1 - diversity)
    if diversity == 0:
        assert expected == [int(ref["ids"][i]) for i in order[:k]]
    assert got == expected


def test_diversity_spreads_the_mix_over_more_artists(shared, ref):
    song = int(ref["ids"][10])
    artists = {}
    for diversity in (0.0, 0.8):
        body = {"positive": [song], "k": 20, "diversity": diversity}
        got = shared.post("/recommend", json=body).json()["results"]
        artists[diversity] = len({r["artist"]["id"] for r in got})
    assert artists[0.8] >= artists[0.0]


def test_caps_exclusions_and_duplicates_hold_on_random_requests(shared, ref):
    rng = np.random.default_rng(7)
    n = len(ref["ids"])
    for _ in range(40):
        rows = rng.choice(n, int(rng.integers(1, 5)), replace=False)
        n_pos = int(rng.integers(1, len(rows) + 1))
        pos = [int(ref["ids"][r]) for r in rows[:n_pos]]
        neg = [int(ref["ids"][r]) for r in rows[n_pos:]]
        body = {
            "positive": pos,
            "negative": neg,
            "strategy": str(rng.choice(["average", "best"])),
            "k": int(rng.integers(1, 40)),
            "exclude": [int(i) for i in rng.choice(ref["ids"], int(rng.integers(0, 30)))],
            "diversity": float(rng.choice([0, 0.2, 0.6])),
        }
        for cap in ("max_per_artist", "max_per_album"):
            if rng.random() < 0.6:
                body[cap] = int(rng.integers(1, 3))
        if rng.random() < 0.3:
            body["min_duration"], body["max_duration"] = 120.0, 360.0
        response = shared.post("/recommend", json=body)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        rules = {
            key: body.get(key)
            for key in ("max_per_artist", "max_per_album", "min_duration", "max_duration")
        }
        check_list(ref, results, k=body["k"], seeds=pos + neg, exclude=body["exclude"], **rules)
        assert len(results) == body["k"]  # 1500 songs always hold k that pass these rules


def test_a_same_title_and_artist_copy_counts_once(client, catalogue):
    row = 30
    track = catalogue.tracks.iloc[row]
    features = (catalogue.features[row] + 1e-3).astype(float).tolist()
    copy = {
        "title": f"  {track['title'].upper()}!",
        "artist": int(track["artist_id"]),
        "features": features,
    }
    added = client.post("/songs", json=copy)
    assert added.status_code == 201, added.text
    song = int(catalogue.track_ids[row])
    got = [
        r["id"]
        for r in client.post("/recommend", json={"positive": [song], "k": 10}).json()["results"]
    ]
    assert added.json()["id"] not in got  # the seed's own duplicate
    neighbour = got[0]
    got = [
        r["id"]
        for r in client.post("/recommend", json={"positive": [neighbour], "k": 30}).json()[
            "results"
        ]
    ]
    assert not {song, added.json()["id"]} <= set(got)  # at most one of the two copies


# ---- GET /songs/{a}/path/{b}


def brute_force_path(ref, a, b, length, *, max_per_artist=None, genre=None):
    ra, rb = ref["row"][a], ref["row"][b]
    start, end = ref["emb"][ra], ref["emb"][rb]
    used, counts = {ra, rb}, {}
    for r in (ra, rb):
        counts[ref["artist"][r]] = counts.get(ref["artist"][r], 0) + 1
    path = [a]
    for i in range(1, length - 1):
        target = start + i / (length - 1) * (end - start)
        d = dist(ref, target)
        for r in np.argsort(d, kind="stable"):
            artist = ref["artist"][r]
            if r in used or (genre is not None and ref["genre"][r] != genre):
                continue
            if max_per_artist is not None and counts.get(artist, 0) >= max_per_artist:
                continue
            if ref["title"][r] in {ref["title"][u] for u in used}:
                continue
            used.add(r)
            counts[artist] = counts.get(artist, 0) + 1
            path.append(int(ref["ids"][r]))
            break
        else:
            return path + [b], False
    return path + [b], True


@pytest.mark.parametrize(
    ("pair", "length", "cap", "backend"),
    [
        ((0, 700), 8, None, "faiss"),
        ((5, 1200), 12, 1, "faiss"),
        ((100, 101), 2, None, "faiss"),
        ((9, 999), 30, 2, "faiss"),
        ((5, 1200), 12, 1, "milvus"),
    ],
)
def test_a_path_steps_through_the_nearest_songs_to_its_waypoints(
    request, ref, pair, length, cap, backend
):
    shared = service_on(request, backend)
    a, b = (int(ref["ids"][i]) for i in pair)
    params = {"length": length} | ({"max_per_artist": cap} if cap else {})
    response = shared.get(f"/songs/{a}/path/{b}", params=params)
    assert response.status_code == 200, response.text
    got = [r["id"] for r in response.json()["results"]]
    assert got[0] == a and got[-1] == b and len(got) == length == len(set(got))
    expected, _ = brute_force_path(ref, a, b, length, max_per_artist=cap)
    assert got == expected
    steps = [r["distance"] for r in response.json()["results"]]
    emb = ref["emb"][[ref["row"][i] for i in got]]
    np.testing.assert_allclose(
        steps[1:], np.linalg.norm(np.diff(emb, axis=0), axis=1), rtol=1e-5, atol=1e-6
    )


def test_a_path_that_cannot_be_filled_says_how_many_songs_could(shared, ref):
    genre = next(g for g in ref["genre"] if isinstance(g, str) and g)
    in_genre = np.flatnonzero(ref["genre"] == genre)
    a, b = int(ref["ids"][in_genre[0]]), int(ref["ids"][in_genre[-1]])
    artists = set(ref["artist"][in_genre].tolist())
    ends = {ref["artist"][in_genre[0]], ref["artist"][in_genre[-1]]}
    possible = len(artists - ends) + 2
    assert possible < 200
    params = {"length": 200, "genre": genre, "max_per_artist": 1}
    response = shared.get(f"/songs/{a}/path/{b}", params=params)
    assert response.status_code == 422
    assert f"only {possible} songs" in response.json()["detail"]
    params["length"] = possible  # and exactly that many are given
    response = shared.get(f"/songs/{a}/path/{b}", params=params)
    assert response.status_code == 200, response.text
    got = response.json()["results"]
    assert len(got) == possible
    assert all(r["genre"] == genre for r in got[1:-1])


def test_variety_gives_other_paths_reproducibly(shared, ref):
    a, b = int(ref["ids"][3]), int(ref["ids"][1300])

    def path(**params):
        r = shared.get(f"/songs/{a}/path/{b}", params={"length": 12, **params})
        return [s["id"] for s in r.json()["results"]]

    straight = path()
    varied = {tuple(path(variety=1.0, seed=s)) for s in range(4)}
    assert path(variety=1.0, seed=2) == path(variety=1.0, seed=2)
    assert len(varied | {tuple(straight)}) >= 3
    assert all(p[0] == a and p[-1] == b and len(set(p)) == 12 for p in varied)


# ---- POST /radio


def test_radio_never_repeats_an_artist_inside_the_gap(shared, ref):
    rng = np.random.default_rng(11)
    for _ in range(25):
        seeds = [int(i) for i in rng.choice(ref["ids"], int(rng.integers(1, 4)), replace=False)]
        history = [int(i) for i in rng.choice(ref["ids"], int(rng.integers(0, 12)), replace=False)]
        gap = int(rng.integers(0, 8))
        body = {
            "seeds": seeds,
            "history": history,
            "n": int(rng.integers(1, 25)),
            "artist_gap": gap,
            "seed_weight": float(rng.random()),
        }
        response = shared.post("/radio", json=body)
        assert response.status_code == 200, response.text
        got = [r["id"] for r in response.json()["results"]]
        assert len(got) == body["n"]
        assert not set(got) & (set(history) | set(seeds))
        played = history + got
        artists = [int(ref["artist"][ref["row"][i]]) for i in played]
        for i in range(len(history), len(played)):
            assert artists[i] not in artists[max(0, i - gap) : i], (gap, artists)


@pytest.mark.parametrize("backend", ["faiss", "milvus"])
def test_each_radio_song_is_nearest_to_the_blend_of_last_played_and_seeds(request, ref, backend):
    shared = service_on(request, backend)
    seeds, history = [int(ref["ids"][50]), int(ref["ids"][51])], [int(ref["ids"][400])]
    w = 0.4
    body = {"seeds": seeds, "history": history, "n": 6, "seed_weight": w, "artist_gap": 0}
    got = [r["id"] for r in shared.post("/radio", json=body).json()["results"]]
    centre = ref["emb"][[ref["row"][s] for s in seeds]].mean(0)
    last, used = ref["emb"][ref["row"][history[0]]], {ref["row"][i] for i in seeds + history}
    for song in got:
        d = dist(ref, (1 - w) * last + w * centre)
        used_keys = {ref["title"][u] for u in used}
        candidates = [
            r
            for r in np.argsort(d, kind="stable")
            if r not in used and ref["title"][r] not in used_keys
        ]
        assert song == int(ref["ids"][candidates[0]])
        used.add(ref["row"][song])
        last = ref["emb"][ref["row"][song]]


# ---- M3U


def parse_m3u(text):
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    entries = []
    for info, location in zip(lines[1::2], lines[2::2], strict=True):
        assert info.startswith("#EXTINF:")
        seconds, label = info[len("#EXTINF:") :].split(",", 1)
        assert not location.startswith("#") and location
        entries.append((int(seconds), label, location))
    return entries


def test_every_list_answer_is_also_an_m3u_playlist(shared, ref):
    a, b = int(ref["ids"][1]), int(ref["ids"][800])
    calls = [
        shared.get(f"/songs/{a}/similar", params={"k": 5, "format": "m3u"}),
        shared.post("/recommend?format=m3u", json={"positive": [a, b], "k": 5}),
        shared.get(f"/songs/{a}/path/{b}", params={"length": 5, "format": "m3u"}),
        shared.post("/radio?format=m3u", json={"seeds": [a], "n": 5}),
    ]
    for response in calls:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("audio/x-mpegurl")
        entries = parse_m3u(response.text)
        assert len(entries) == 5
        for seconds, label, location in entries:
            song = int(location.removeprefix("http://testserver/songs/").removesuffix("/audio"))
            row = ref["row"][song]
            assert seconds == round(ref["duration"][row])
            assert label == f"{ref['names'][row][0]} - {ref['names'][row][1]}"
            assert location == f"http://testserver/songs/{song}/audio"


def test_posted_features_answer_as_m3u_the_songs_of_the_json_answer(shared, ref, catalogue):
    body = {"features": catalogue.features[70].astype(float).tolist(), "k": 6}
    listed = shared.post("/songs/similar", json=body)
    playlist = shared.post("/songs/similar?format=m3u", json=body)
    assert playlist.status_code == 200, playlist.text
    assert playlist.headers["content-type"].startswith("audio/x-mpegurl")
    entries = parse_m3u(playlist.text)
    expected = listed.json()["results"]
    assert len(entries) == len(expected) == 6
    for (seconds, label, location), item in zip(entries, expected, strict=True):
        row = ref["row"][item["id"]]
        assert location == f"http://testserver/songs/{item['id']}/audio"
        assert seconds == round(ref["duration"][row])
        assert label == f"{ref['names'][row][0]} - {ref['names'][row][1]}"


# ---- bad input


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"positive": []}, "at least 1 item"),
        ({"positive": [999_999_999]}, "no song with id 999999999"),
        ({"positive": ["SONG"], "negative": [999_999_998]}, "negative: no song with id 999999998"),
        ({"positive": ["SONG"], "max_per_artist": 0}, "max_per_artist"),
        ({"positive": ["SONG"], "max_per_album": 0}, "max_per_album"),
        ({"positive": ["SONG"], "min_duration": 300, "max_duration": 100}, "above max_duration"),
        ({"positive": ["SONG"] * 51}, "at most 50 positive + negative examples, got 51"),
        ({"positive": ["SONG"], "strategy": "median"}, "average"),
        ({"positive": ["SONG"], "k": 5000}, "k must be between 1 and 1000"),
        ({"positive": ["SONG"], "diversity": 1.5}, "diversity"),
        ({"positive": ["SONG"], "diversity": 0.1, "k": 201}, "with diversity, k must be at most"),
        ({"positive": ["SONG"], "exclude": list(range(2001))}, "at most 2000 items"),
        ({"positive": ["SONG"], "genre": "Polka"}, "unknown genre 'Polka'"),
        ({"positive": [{"features": [0.5] * 3}]}, "at least 518"),
    ],
)
def test_bad_recommend_requests_get_a_4xx_naming_the_problem(client, ref, body, fragment):
    song = int(ref["ids"][0])
    body = {
        key: [song if x == "SONG" else x for x in v] if isinstance(v, list) else v
        for key, v in body.items()
    }
    response = client.post("/recommend", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert fragment in response.text


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/songs/A/path/A", {}, 422, "two different songs"),
        ("/songs/A/path/999999999", {}, 404, "song 999999999 not found"),
        ("/songs/A/path/B", {"length": 1}, 422, "greater than or equal to 2"),
        ("/songs/A/path/B", {"length": 201}, 422, "length must be between 2 and 200"),
        ("/songs/A/path/B", {"max_per_artist": 0}, 422, "greater than or equal to 1"),
        ("/songs/A/path/B", {"min_duration": 5, "max_duration": 1}, 422, "above max_duration"),
        ("/songs/A/path/B", {"genre": "Polka"}, 422, "unknown genre"),
        ("/songs/A/path/B", {"near": "0,0", "radius_km": 1, "length": 3}, 422, "only 2 songs"),
    ],
)
def test_bad_path_requests_get_a_4xx_naming_the_problem(
    client, ref, path, params, status, fragment
):
    a, b = int(ref["ids"][0]), int(ref["ids"][1])
    response = client.get(path.replace("A", str(a)).replace("B", str(b)), params=params)
    assert response.status_code == status, response.text
    assert fragment in response.text


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"seeds": []}, "at least 1 item"),
        ({"seeds": [999_999_999]}, "seeds: no song with id 999999999"),
        ({"seeds": ["SONG"], "n": 0}, "greater than or equal to 1"),
        ({"seeds": ["SONG"], "n": 201}, "n must be between 1 and 200"),
        ({"seeds": ["SONG"] * 51}, "at most 50 seeds"),
        ({"seeds": ["SONG"], "artist_gap": -1}, "artist_gap"),
        ({"seeds": ["SONG"], "seed_weight": 2}, "seed_weight"),
        ({"seeds": ["SONG"], "history": list(range(2001))}, "at most 2000 items"),
    ],
)
def test_bad_radio_requests_get_a_4xx_naming_the_problem(client, ref, body, fragment):
    song = int(ref["ids"][0])
    body = {
        key: [song if x == "SONG" else x for x in v] if isinstance(v, list) else v
        for key, v in body.items()
    }
    response = client.post("/radio", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert fragment in response.text


def test_the_largest_requests_within_the_limits_are_answered_in_full(shared, ref):
    """Every bound is reachable: a 200-song path, a 200-song radio, a best mix of k=1000
    from 50 examples, a diverse mix of k=200."""
    a, b = int(ref["ids"][5]), int(ref["ids"][1200])
    path = shared.get(f"/songs/{a}/path/{b}", params={"length": 200, "max_per_artist": 1})
    assert path.status_code == 200, path.text
    got = [r["id"] for r in path.json()["results"]]
    assert got == brute_force_path(ref, a, b, 200, max_per_artist=1)[0]
    radio = shared.post("/radio", json={"seeds": [a], "n": 200})
    assert radio.status_code == 200 and len(radio.json()["results"]) == 200
    examples = [int(i) for i in ref["ids"][:50]]
    body = {"positive": examples[:40], "negative": examples[40:], "strategy": "best", "k": 1000}
    mix = shared.post("/recommend", json=body)
    assert mix.status_code == 200, mix.text
    check_list(ref, mix.json()["results"], k=1000, seeds=examples)
    assert len(mix.json()["results"]) == 1000
    mix = shared.post("/recommend", json={"positive": [a], "k": 200, "diversity": 0.3})
    assert mix.status_code == 200 and len(mix.json()["results"]) == 200


def test_few_songs_passing_the_filters_give_short_lists_not_a_hang(shared, ref):
    lat, lon = 0.0, 0.0  # the synthetic catalogue places no artist on the equator at 0,0
    song = int(ref["ids"][0])
    near = {"near": f"{lat},{lon}", "radius_km": 1}
    mix = shared.post("/recommend", json={"positive": [song], "k": 50, **near})
    assert mix.status_code == 200 and mix.json()["results"] == []
    mix = shared.post("/recommend", json={"positive": [song], "k": 50, "strategy": "best", **near})
    assert mix.status_code == 200 and mix.json()["results"] == []
    radio = shared.post("/radio", json={"seeds": [song], "n": 50, **near})
    assert radio.status_code == 200 and radio.json()["results"] == []
    capped = shared.post("/recommend", json={"positive": [song], "k": 1000, "max_per_artist": 1})
    artists = len(set(ref["artist"][1:].tolist()))  # artists with a song besides the seed
    assert capped.status_code == 200 and len(capped.json()["results"]) == artists


def test_unknown_history_and_exclude_ids_are_ignored(shared, ref):
    song = int(ref["ids"][0])
    radio = shared.post("/radio", json={"seeds": [song], "history": [999_999_999], "n": 3})
    assert radio.status_code == 200 and len(radio.json()["results"]) == 3
    mix = shared.post("/recommend", json={"positive": [song], "exclude": [999_999_999], "k": 3})
    assert mix.status_code == 200 and len(mix.json()["results"]) == 3


def test_a_song_deleted_from_the_catalogue_is_named_and_never_returned(client, settings, ref):
    gone, neighbour = int(ref["ids"][12]), None
    similar = client.get(f"/songs/{gone}/similar", params={"k": 1}).json()["results"]
    neighbour = similar[0]["id"]
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:  # behind the service's back: the index still holds it
        connection.execute(text("DELETE FROM songs WHERE id = :id"), {"id": gone})
    engine.dispose()
    response = client.post("/recommend", json={"positive": [gone]})
    assert response.status_code == 422 and f"no song with id {gone}" in response.text
    response = client.post("/radio", json={"seeds": [gone]})
    assert response.status_code == 422 and f"no song with id {gone}" in response.text
    response = client.get(f"/songs/{neighbour}/path/{gone}")
    assert response.status_code == 404 and f"song {gone} not found" in response.text
    for call in (
        client.post("/recommend", json={"positive": [neighbour], "k": 30}),
        client.post("/recommend", json={"positive": [neighbour], "k": 30, "strategy": "best"}),
        client.post("/radio", json={"seeds": [neighbour], "n": 30}),
        client.get(f"/songs/{neighbour}/path/{int(ref['ids'][13])}", params={"length": 30}),
    ):
        assert call.status_code == 200, call.text
        ids = [r["id"] for r in call.json()["results"]]
        assert gone not in ids and len(ids) == 30
