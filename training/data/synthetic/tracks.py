"""tracks.csv: all 52 of FMA's columns for the layout's tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.features import INDEX_NAME
from training.data.fma import TOP_GENRES
from training.data.synthetic.columns import TRACK_COLUMNS, _words
from training.data.synthetic.genres import _TrackGenres
from training.data.synthetic.layout import _Layout

# Share of artists with a known location and coordinates.
_LOCATED_SHARE = 1 / 3
# Real city coordinates (latitude, longitude); located artists cluster around them.
CITIES: tuple[tuple[str, float, float], ...] = (
    ("Brooklyn, NY", 40.6782, -73.9442),
    ("New York, NY", 40.7128, -74.0060),
    ("Philadelphia, PA", 39.9526, -75.1652),
    ("Boston, MA", 42.3601, -71.0589),
    ("Chicago, IL", 41.8781, -87.6298),
    ("Los Angeles, CA", 34.0522, -118.2437),
    ("San Francisco, CA", 37.7749, -122.4194),
    ("Portland, OR", 45.5152, -122.6784),
    ("Seattle, WA", 47.6062, -122.3321),
    ("Austin, TX", 30.2672, -97.7431),
    ("Asheville, NC", 35.5951, -82.5515),
    ("Montreal, Canada", 45.5019, -73.5674),
    ("Toronto, Canada", 43.6532, -79.3832),
    ("Mexico City, Mexico", 19.4326, -99.1332),
    ("São Paulo, Brazil", -23.5505, -46.6333),
    ("Buenos Aires, Argentina", -34.6037, -58.3816),
    ("London, UK", 51.5074, -0.1278),
    ("Bristol, UK", 51.4545, -2.5879),
    ("Paris, France", 48.8566, 2.3522),
    ("Berlin, Germany", 52.5200, 13.4050),
    ("Amsterdam, Netherlands", 52.3676, 4.9041),
    ("Brussels, Belgium", 50.8503, 4.3517),
    ("Madrid, Spain", 40.4168, -3.7038),
    ("Barcelona, Spain", 41.3874, 2.1686),
    ("Lisbon, Portugal", 38.7223, -9.1393),
    ("Rome, Italy", 41.9028, 12.4964),
    ("Vienna, Austria", 48.2082, 16.3738),
    ("Prague, Czech Republic", 50.0755, 14.4378),
    ("Warsaw, Poland", 52.2297, 21.0122),
    ("Stockholm, Sweden", 59.3293, 18.0686),
    ("Oslo, Norway", 59.9139, 10.7522),
    ("Helsinki, Finland", 60.1699, 24.9384),
    ("Moscow, Russia", 55.7558, 37.6173),
    ("Istanbul, Turkey", 41.0082, 28.9784),
    ("Tel Aviv, Israel", 32.0853, 34.7818),
    ("Lagos, Nigeria", 6.5244, 3.3792),
    ("Cape Town, South Africa", -33.9249, 18.4241),
    ("Mumbai, India", 19.0760, 72.8777),
    ("Tokyo, Japan", 35.6762, 139.6503),
    ("Melbourne, Australia", -37.8136, 144.9631),
)
# FMA's artists are mostly North American: the first 11 cities (US) are drawn more often.
_CITY_WEIGHTS = np.array([3.0] * 11 + [1.0] * (len(CITIES) - 11))

_LICENSES = (
    "Attribution-NonCommercial-ShareAlike 3.0 International",
    "Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International",
    "Attribution-Noncommercial-Share Alike 3.0 United States",
    "Attribution 4.0 International",
    "Attribution-NonCommercial 3.0 International",
    "Attribution-ShareAlike 3.0 International",
)
_LICENSE_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.12, 0.1, 0.08])

# Word lists for names and titles.
_ADJECTIVES = _words(
    "Silver Hollow Electric Quiet Broken Golden Velvet Paper Distant Crimson Lonely Neon "
    "Frozen Secret Wild Gentle Hidden Burning Empty Northern Static Amber Restless Glass "
    "Midnight Sleepy Bright Dusty Lost Little Strange Blue Black White Slow Violet"
)
_NOUNS = _words(
    "River Harbor Signal Garden Machine Ghost Mountain Letter Window Forest Engine Comet "
    "Mirror Desert Station Lantern Orchard Tide Echo Meadow Satellite Feather Canyon Ember "
    "Radio Island Wolf Sparrow Circuit Tower Harvest Static Ocean Thunder Valley Moth"
)
_FIRST_NAMES = _words(
    "Ana Ben Clara Dmitri Elena Felix Grace Hiro Ines Jonas Kofi Lena Marco Nadia Oscar "
    "Priya Quinn Rosa Sami Tara Umar Vera Wes Ximena Yusuf Zoe"
)
_LAST_NAMES = _words(
    "Abbott Berg Castillo Dorsey Engel Fontaine Garcia Holm Ito Jensen Kowalski Lund "
    "Moreau Novak Okafor Petrov Quist Romero Sato Thorne Ueda Varga Weiss Young Zimmer"
)


def _tracks_table(
    layout: _Layout, genres: _TrackGenres, *, rng: np.random.Generator
) -> pd.DataFrame:
    """All 52 FMA columns; fields nothing reads stay mostly empty, as they are in FMA."""
    artist = layout.track_artist
    # Upload times: albums arrive in id order, over FMA's first eight years.
    uploaded = np.sort(rng.integers(0, 8 * 365 * 86_400, len(layout.album_ids)))
    columns = {
        **_album_columns(layout, uploaded, rng=rng),
        **{("artist", k): v[artist] for k, v in _artist_columns(layout, uploaded, rng=rng).items()},
        **_set_columns(layout, genres, rng=rng),
        **_track_columns(layout, genres, uploaded, rng=rng),
    }
    n = len(layout.track_ids)
    data = {col: columns.get(col, np.full(n, np.nan)) for col in TRACK_COLUMNS}
    table = pd.DataFrame(data, index=pd.Index(layout.track_ids, name=INDEX_NAME))
    table.columns = pd.MultiIndex.from_tuples(TRACK_COLUMNS)
    return table


def _names(n: int, shapes: tuple[str, ...], *, rng: np.random.Generator) -> np.ndarray:
    """Plausible titles and names from word lists, each in one of the given shapes."""
    words = {
        "adj": np.array(_ADJECTIVES)[rng.integers(0, len(_ADJECTIVES), n)],
        "noun": np.array(_NOUNS)[rng.integers(0, len(_NOUNS), n)],
        "noun2": np.array(_NOUNS)[rng.integers(0, len(_NOUNS), n)],
        "first": np.array(_FIRST_NAMES)[rng.integers(0, len(_FIRST_NAMES), n)],
        "last": np.array(_LAST_NAMES)[rng.integers(0, len(_LAST_NAMES), n)],
    }
    choice = rng.integers(0, len(shapes), n)
    return np.array(
        [shapes[c].format(**{k: v[i] for k, v in words.items()}) for i, c in enumerate(choice)],
        dtype=object,
    )


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    """FMA's 'YYYY-MM-DD HH:MM:SS' strings for seconds after FMA's launch (2008-11-25)."""
    stamps = np.datetime64("2008-11-25T00:00:00") + seconds.astype("timedelta64[s]")
    return np.char.replace(np.datetime_as_string(stamps, unit="s"), "T", " ").astype(object)


def _artist_columns(
    layout: _Layout, uploaded: np.ndarray, *, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n = len(layout.artist_ids)
    names = _names(n, ("{adj} {noun}", "The {adj} {noun}s", "{first} {last}"), rng=rng)
    # An artist signs up some days before uploading a first album.
    first_upload = np.full(n, uploaded.max(initial=0))
    np.minimum.at(first_upload, layout.album_artist, uploaded)
    created = np.maximum(first_upload - rng.integers(0, 180 * 86_400, n), 0)
    located = rng.random(n) < _LOCATED_SHARE
    city = rng.choice(len(CITIES), n, p=_CITY_WEIGHTS / _CITY_WEIGHTS.sum())
    # Coordinates cluster around real cities with a spread of a few kilometres.
    lat = np.array([c[1] for c in CITIES])[city] + rng.normal(0, 0.05, n)
    lon = np.array([c[2] for c in CITIES])[city] + rng.normal(0, 0.05, n)
    begin = [f"{year}-01-01 00:00:00" for year in rng.integers(1975, 2016, n)]
    return {
        "active_year_begin": _known_where(rng.random(n) < 0.2, begin),
        "comments": rng.poisson(0.3, n),
        "date_created": _timestamps(created),
        "favorites": rng.geometric(0.3, n) - 1,
        "id": layout.artist_ids,
        "latitude": np.where(located, np.round(lat, 7), np.nan),
        "location": _known_where(located, np.array([c[0] for c in CITIES], dtype=object)[city]),
        "longitude": np.where(located, np.round(lon, 7), np.nan),
        "name": names,
        "tags": np.full(n, "[]", dtype=object),
        "website": _known_where(
            rng.random(n) < 0.4,
            [f"http://{s.lower().replace(' ', '')}.bandcamp.com" for s in names],
        ),
    }


def _album_columns(
    layout: _Layout, uploaded: np.ndarray, *, rng: np.random.Generator
) -> dict[tuple[str, str], np.ndarray]:
    n = len(layout.album_ids)
    sizes = np.bincount(layout.track_album, minlength=n)
    kinds = np.where(sizes == 1, "Single Tracks", "Album").astype(object)
    kinds[rng.random(n) < 0.03] = "Live Performance"
    # Released up to two years before the upload (times before FMA's launch are fine).
    released = _timestamps(uploaded - rng.integers(0, 2 * 365 * 86_400, n))
    per_album = {
        "comments": rng.poisson(0.2, n),
        "date_created": _timestamps(uploaded),
        "date_released": _known_where(rng.random(n) < 0.6, released),
        "favorites": rng.geometric(0.5, n) - 1,
        "id": layout.album_ids,
        "information": _known_where(rng.random(n) < 0.3, "<p></p>"),
        "listens": np.round(rng.lognormal(7.5, 1.5, n)).astype(np.int64),
        "tags": np.full(n, "[]", dtype=object),
        "title": _names(n, ("{adj} {noun}", "{noun} of the {noun2}", "{noun}s"), rng=rng),
        "tracks": sizes,
        "type": kinds,
    }
    return {("album", k): v[layout.track_album] for k, v in per_album.items()}


def _set_columns(
    layout: _Layout, genres: _TrackGenres, *, rng: np.random.Generator
) -> dict[tuple[str, str], np.ndarray]:
    """FMA's split is by artist (80/10/10); subsets nest small < medium < large.

    Only tracks with a genre_top are in the small and medium subsets, as in FMA.
    """
    artist_split = rng.choice(
        np.array(["training", "validation", "test"], dtype=object),
        len(layout.artist_ids),
        p=[0.8, 0.1, 0.1],
    )
    draw = rng.random(len(layout.track_ids))
    has_top = genres.genre_top >= 0
    subset = np.where(
        has_top & (draw < 0.1), "small", np.where(has_top & (draw < 0.3), "medium", "large")
    )
    return {
        ("set", "split"): artist_split[layout.track_artist],
        ("set", "subset"): subset.astype(object),
    }


def _track_columns(
    layout: _Layout, genres: _TrackGenres, uploaded: np.ndarray, *, rng: np.random.Generator
) -> dict[tuple[str, str], np.ndarray]:
    n = len(layout.track_ids)
    titles = np.array([title for _, title, _ in TOP_GENRES], dtype=object)
    # Classical and Spoken pieces run long, most others are songs of three to five minutes.
    typical = np.array([300 if t in ("Classical", "Spoken") else 230 for t in titles])
    main = layout.artist_genre[layout.track_artist]
    duration = np.clip(rng.lognormal(np.log(typical[main]), 0.45), 15, 3_600).astype(np.int64)
    listens = np.round(rng.lognormal(6.0, 1.4, n)).astype(np.int64)
    bit_rates = np.array([320_000, 256_000, 192_000, 128_000])
    return {
        ("track", "bit_rate"): rng.choice(bit_rates, n, p=[0.5, 0.2, 0.15, 0.15]),
        ("track", "comments"): rng.poisson(0.05, n),
        ("track", "date_created"): _timestamps(
            uploaded[layout.track_album] + 60 * layout.track_number
        ),
        ("track", "duration"): duration,
        ("track", "favorites"): rng.geometric(0.6, n) - 1,
        ("track", "genre_top"): _known_where(genres.genre_top >= 0, titles[genres.genre_top]),
        ("track", "genres"): np.array([_id_list(g) for g in genres.genres], dtype=object),
        ("track", "genres_all"): np.array([_id_list(g) for g in genres.genres_all], dtype=object),
        ("track", "interest"): np.round(listens * rng.uniform(1.2, 3.0, n)).astype(np.int64),
        ("track", "language_code"): _known_where(rng.random(n) < 0.15, "en"),
        ("track", "license"): np.array(_LICENSES, dtype=object)[
            rng.choice(len(_LICENSES), n, p=_LICENSE_WEIGHTS)
        ],
        ("track", "listens"): listens,
        ("track", "number"): layout.track_number,
        ("track", "tags"): np.full(n, "[]", dtype=object),
        ("track", "title"): _names(n, ("{adj} {noun}", "{noun} of the {noun2}"), rng=rng),
    }


def _known_where(known: np.ndarray, values: object) -> np.ndarray:
    """values where known, else an empty cell (NaN), as FMA leaves unknown fields."""
    return np.where(known, np.asarray(values, dtype=object), np.nan)


def _id_list(ids: list[int]) -> str:
    """FMA writes genre lists as Python lists: '[21, 811]'."""
    return "[" + ", ".join(str(i) for i in ids) + "]"
