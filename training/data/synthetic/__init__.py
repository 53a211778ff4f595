"""A synthetic music catalogue in the Free Music Archive (FMA) metadata format.

The real FMA download cannot be reached from our machines, so the loader, training,
evaluation and the service are developed against this stand-in. It writes the same three
files as FMA's `fma_metadata/` release, with the same layouts, so every part of the system
reads it exactly as it would read FMA. Usage::

    from pathlib import Path
    import pandas as pd
    from training.data.synthetic import write_demo_catalogue

    demo = write_demo_catalogue(out_dir=Path("data/demo"), seed=0)  # 10,000 tracks, ~3 s
    tracks = pd.read_csv(demo.out_dir / "tracks.csv", index_col=0, header=[0, 1])
    features = pd.read_csv(demo.out_dir / "features.csv", index_col=0, header=[0, 1, 2])
    genres = pd.read_csv(demo.out_dir / "genres.csv", index_col=0)

    # The FMA-sized benchmark (about 30 s, 1 GB of features.csv):
    write_demo_catalogue(out_dir=Path("data/fma-sized"), n_tracks=106_574, n_artists=16_341)

How the data is made, so that it behaves like music under the paper's protocol:
- FMA's 16 top-level genres with their real ids and skewed sizes; each artist has one main
  genre; tracks per artist are heavy-tailed, about half the artists single-track.
- Hidden latents per genre, per artist (near its genre's) and per track (near its
  artist's): a style that drives musical descriptors through a non-linearity, and an
  artist's "sound" (how bright, how full) that varies little between its tracks.
- Per-track recording nuisances unrelated to the artist (gain, lo-fi band limit, noise
  floor, dynamics) shift many columns at once; each song also has its own content (key,
  melody) that its artist's other songs do not share.
- Each of the 74 librosa series is simulated frame by frame in its physical units (Hz,
  dB, chroma energy in [0, 1], ...) and summarised by the 7 statistics, so the statistics
  relate as real ones do (min <= median <= max, kurtosis >= -2, heavy tails, ...).
- The spectral columns in Hz dwarf all others and carry much of the lo-fi nuisance, so
  raw L2 is dominated by a few nuisance-heavy columns; z-scoring helps a little, and a
  learned map that suppresses nuisances and weighs columns helps more. With the default
  size and seed 0 the paper's protocol gives mean AUC 0.80 (raw), 0.83 (z-scored) and
  about 0.92 for the paper's triplet network (paper, on real FMA: 0.800, 0.825, 0.900).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.features import (
    FEATURE_COLUMNS,
    FEATURE_SIZES,
    HEADER_NAMES,
    INDEX_NAME,
    STATISTICS,
)
from training.data.fma import TOP_GENRES

# FMA's ratio of tracks to artists (106,574 / 16,341), small enough that the whole
# pipeline (generate, train, evaluate) runs in about a minute on two cores.
DEFAULT_TRACKS = 10_000
DEFAULT_ARTISTS = 1_530


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Genres: FMA's 16 top-level genres (training.fma.TOP_GENRES); their genre_top track
# counts set how many artists each genre gets.
# A few sub-genres per top-level genre (FMA names), numbered from an id range that no
# top-level genre uses.
SUB_GENRES: dict[str, tuple[str, ...]] = {
    "Blues": ("Delta Blues", "Electric Blues"),
    "Classical": ("Chamber Music", "Choral Music", "Composed Music", "Opera"),
    "Country": ("Bluegrass", "Rockabilly", "Americana"),
    "Easy Listening": ("Lounge", "Easy Listening: Vocal"),
    "Electronic": ("Ambient Electronic", "Techno", "House", "IDM", "Glitch", "Downtempo"),
    "Experimental": ("Noise", "Avant-Garde", "Sound Collage", "Drone", "Field Recordings"),
    "Folk": ("Free-Folk", "British Folk", "Psych-Folk", "Singer-Songwriter"),
    "Hip-Hop": ("Alternative Hip-Hop", "Rap", "Hip-Hop Beats", "Abstract Hip-Hop"),
    "Instrumental": ("Soundtrack", "Ambient", "New Age"),
    "International": ("Latin America", "African", "Brazilian", "Indian"),
    "Jazz": ("Free-Jazz", "Jazz: Vocal", "Jazz: Out"),
    "Old-Time / Historic": ("Pre-War", "Big Band/Swing"),
    "Pop": ("Experimental Pop", "Synth Pop", "Power-Pop"),
    "Rock": ("Indie-Rock", "Punk", "Post-Rock", "Lo-Fi", "Garage", "Psych-Rock", "Metal"),
    "Soul-RnB": ("Funk", "Disco", "Gospel"),
    "Spoken": ("Poetry", "Talk Radio", "Comedy"),
}
_FIRST_SUB_GENRE_ID = 1300

# ---------------------------------------------------------------------------------------
# The 52 columns of FMA's tracks.csv, in the file's order.
# ---------------------------------------------------------------------------------------
TRACK_COLUMNS: tuple[tuple[str, str], ...] = (
    *(
        ("album", f)
        for f in _words(
            "comments date_created date_released engineer favorites id information listens "
            "producer tags title tracks type"
        )
    ),
    *(
        ("artist", f)
        for f in _words(
            "active_year_begin active_year_end associated_labels bio comments date_created "
            "favorites id latitude location longitude members name related_projects tags "
            "website wikipedia_page"
        )
    ),
    ("set", "split"),
    ("set", "subset"),
    *(
        ("track", f)
        for f in _words(
            "bit_rate comments composer date_created date_recorded duration favorites "
            "genre_top genres genres_all information interest language_code license listens "
            "lyricist number publisher tags title"
        )
    ),
)

# Catalogue shape, after FMA: 8,429 of its 16,341 artists have two or more tracks.
_SINGLE_TRACK_SHARE = 1 - 8_429 / 16_341
# Tail index of the extra tracks of multi-track artists: a few artists get hundreds.
_TRACKS_TAIL_INDEX = 2.5
# Tracks whose genres span two top-level genres have no genre_top, as in FMA.
_MIXED_GENRE_SHARE = 0.2
# Share of tracks (rounded up) with one series of missing statistics, as in FMA.
_MISSING_SHARE = 0.001
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


@dataclass(frozen=True)
class DemoCatalogue:
    """What `write_demo_catalogue` wrote."""

    out_dir: Path
    n_tracks: int
    n_artists: int
    n_genres: int


def write_demo_catalogue(
    *,
    out_dir: Path,
    n_tracks: int = DEFAULT_TRACKS,
    n_artists: int = DEFAULT_ARTISTS,
    seed: int = 0,
) -> DemoCatalogue:
    """Write `tracks.csv`, `features.csv` and `genres.csv` in FMA's format into out_dir.

    The same seed gives byte-identical files. n_genres counts the top-level genres that
    have at least one artist (all 16 once n_artists >= 16).
    """
    _check_sizes(n_tracks=n_tracks, n_artists=n_artists)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Independent streams per concern, so that changing how metadata is drawn does not
    # change the features (and the calibration) of the same seed.
    layout_rng, meta_rng, style_rng, frame_rng = np.random.default_rng(seed).spawn(4)
    layout = _draw_layout(n_tracks=n_tracks, n_artists=n_artists, rng=layout_rng)
    genres = _track_genres(layout, rng=meta_rng)
    _genre_table(genres).to_csv(out_dir / "genres.csv", index=False)
    _tracks_table(layout, genres, rng=meta_rng).to_csv(out_dir / "tracks.csv")
    style = _draw_style(layout, rng=style_rng)
    _write_features(out_dir / "features.csv", _feature_blocks(layout, style, rng=frame_rng))
    n_genres = len(np.unique(layout.artist_genre))
    return DemoCatalogue(out_dir=out_dir, n_tracks=n_tracks, n_artists=n_artists, n_genres=n_genres)


def _check_sizes(*, n_tracks: int, n_artists: int) -> None:
    if n_artists < 1:
        raise ValueError(f"n_artists must be at least 1, got {n_artists}")
    if n_tracks < n_artists:
        raise ValueError(
            f"n_tracks ({n_tracks}) must be at least n_artists ({n_artists}): "
            "every artist has at least one track"
        )


# ---------------------------------------------------------------------------------------
# Layout: artists, their genres, albums and tracks, and the ids that name them.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    artist_ids: np.ndarray  # (n_artists,) increasing
    artist_genre: np.ndarray  # (n_artists,) index into TOP_GENRES
    album_ids: np.ndarray  # (n_albums,) increasing
    album_artist: np.ndarray  # (n_albums,) index into artists
    track_ids: np.ndarray  # (n_tracks,) increasing: rows are written in this order
    track_album: np.ndarray  # (n_tracks,) index into albums
    track_number: np.ndarray  # (n_tracks,) position on its album, from 1

    @property
    def track_artist(self) -> np.ndarray:
        return self.album_artist[self.track_album]


def _draw_layout(*, n_tracks: int, n_artists: int, rng: np.random.Generator) -> _Layout:
    genre_sizes = _artists_per_genre(n_artists)
    # Artist ids are handed out in sign-up order, which has nothing to do with genre.
    artist_genre = rng.permutation(np.repeat(np.arange(len(TOP_GENRES)), genre_sizes))
    tracks = _tracks_per_artist(n_tracks=n_tracks, n_artists=n_artists, rng=rng)
    album_artist, album_sizes = _albums(tracks, rng=rng)
    # FMA numbers albums and tracks by upload time: albums arrive in random order and an
    # album's tracks get consecutive ids.
    order = rng.permutation(len(album_artist))
    album_artist, album_sizes = album_artist[order], album_sizes[order]
    track_album = np.repeat(np.arange(len(album_artist)), album_sizes)
    starts = np.cumsum(album_sizes) - album_sizes
    return _Layout(
        artist_ids=_sparse_ids(n_artists, first=1, rng=rng),
        artist_genre=artist_genre,
        album_ids=_sparse_ids(len(album_artist), first=1, rng=rng),
        album_artist=album_artist,
        track_ids=_sparse_ids(n_tracks, first=2, rng=rng),
        track_album=track_album,
        track_number=np.arange(n_tracks) - starts[track_album] + 1,
    )


def _artists_per_genre(n_artists: int) -> np.ndarray:
    """Artists per top-level genre, proportional to FMA's genre_top track counts.

    Every genre gets one artist first when there are enough artists, so that even Easy
    Listening (24 of FMA's 49,598 genre_top tracks) exists.
    """
    weights = np.array([count for _, _, count in TOP_GENRES], dtype=np.float64)
    floor = np.ones(len(weights), dtype=np.int64) if n_artists >= len(weights) else 0
    return floor + _largest_remainder(weights, n_artists - int(np.sum(floor)))


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to weights that sum exactly to total (Hamilton's method)."""
    quota = weights / weights.sum() * total
    counts = np.floor(quota).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return counts


def _tracks_per_artist(*, n_tracks: int, n_artists: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed tracks per artist: about half single-track, a few with hundreds."""
    counts = np.ones(n_artists, dtype=np.int64)
    n_multi = min(round(n_artists * (1 - _SINGLE_TRACK_SHARE)), n_tracks - n_artists)
    multi = rng.permutation(n_artists)[:n_multi]
    counts[multi] += 1
    spare = n_tracks - n_artists - n_multi
    if spare > 0:
        # Lomax weights give most multi-track artists a handful and a few very many.
        weights = rng.pareto(_TRACKS_TAIL_INDEX, n_multi) + 1e-3
        counts[multi] += rng.multinomial(spare, weights / weights.sum())
    return counts


def _albums(tracks: np.ndarray, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split each artist's tracks into albums of a dozen or so: (album_artist, album_sizes)."""
    n_albums = 1 + rng.binomial(tracks - 1, 0.1)
    album_artist = np.repeat(np.arange(len(tracks)), n_albums)
    # Near-equal album sizes within an artist, larger ones first.
    rank = np.arange(len(album_artist)) - np.repeat(np.cumsum(n_albums) - n_albums, n_albums)
    base = tracks[album_artist] // n_albums[album_artist]
    extra = rank < (tracks % n_albums)[album_artist]
    return album_artist, base + extra


def _sparse_ids(n: int, *, first: int, rng: np.random.Generator) -> np.ndarray:
    """n increasing ids with occasional gaps, as FMA's deleted entries leave them."""
    gaps = 1 + rng.geometric(0.6, n) * (rng.random(n) < 0.3)
    gaps[0] = 0
    return first + np.cumsum(gaps)


# ---------------------------------------------------------------------------------------
# Genres of tracks and genres.csv
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TrackGenres:
    genres: list[list[int]]  # per track, FMA's `genres`
    genres_all: list[list[int]]  # per track, with the parents added
    genre_top: np.ndarray  # per track, index into TOP_GENRES, or -1 when mixed
    sub_ids: dict[str, list[int]]  # sub-genre ids per top-level title


def _sub_genre_ids() -> dict[str, list[int]]:
    ids, next_id = {}, _FIRST_SUB_GENRE_ID
    for _, title, _ in TOP_GENRES:
        ids[title] = list(range(next_id, next_id + len(SUB_GENRES[title])))
        next_id += len(SUB_GENRES[title])
    return ids


def _track_genres(layout: _Layout, *, rng: np.random.Generator) -> _TrackGenres:
    """FMA-style genre lists: an artist's own genre or sub-genre, sometimes a second genre.

    A track whose genres fall under two top-level genres has no genre_top in FMA; about a
    fifth of the tracks are like that, but still list their genres.
    """
    sub_ids = _sub_genre_ids()
    top_ids = [gid for gid, _, _ in TOP_GENRES]
    main = layout.artist_genre[layout.track_artist]
    mixed = rng.random(len(main)) < _MIXED_GENRE_SHARE
    other = _foreign_genres(main, rng=rng)
    # A track names a sub-genre of its own genre 3 times in 4 (else the genre itself), and
    # of a second genre 1 time in 2.
    use_sub = rng.random((len(main), 2)) < (0.75, 0.5)
    which = rng.random((len(main), 2))
    genres, genres_all = [], []
    for g, mix, o, sub, w in zip(main, mixed, other, use_sub, which, strict=True):
        own = [_pick_genre(g, sub[0], w[0], sub_ids)]
        foreign = [_pick_genre(o, sub[1], w[1], sub_ids)] if mix else []
        listed = sorted(set(own + foreign))
        parents = [top_ids[g]] + ([top_ids[o]] if mix else [])
        genres.append(listed)
        genres_all.append(sorted(set(listed + parents)))
    genre_top = np.where(mixed, -1, main)
    return _TrackGenres(genres=genres, genres_all=genres_all, genre_top=genre_top, sub_ids=sub_ids)


def _pick_genre(top: int, use_sub: bool, which: float, sub_ids: dict[str, list[int]]) -> int:
    """The id of top-level genre `top`, or of its sub-genre at fraction `which` of the list."""
    gid, title, _ = TOP_GENRES[top]
    return sub_ids[title][int(which * len(sub_ids[title]))] if use_sub else gid


def _foreign_genres(main: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """A second top-level genre per track, by FMA's genre sizes, never the track's own."""
    weights = np.array([count for _, _, count in TOP_GENRES], dtype=np.float64)
    other = rng.choice(len(weights), len(main), p=weights / weights.sum())
    clash = other == main
    while clash.any():  # redraw the few that hit their own genre
        other[clash] = rng.choice(len(weights), int(clash.sum()), p=weights / weights.sum())
        clash = other == main
    return other


def _genre_table(genres: _TrackGenres) -> pd.DataFrame:
    """genres.csv: genre_id, #tracks (tracks listing it in genres_all), parent, title, top_level."""
    rows = []
    for gid, title, _ in TOP_GENRES:
        rows.append((gid, 0, title, gid))
        rows += [
            (sid, gid, name, gid)
            for sid, name in zip(genres.sub_ids[title], SUB_GENRES[title], strict=True)
        ]
    table = pd.DataFrame(rows, columns=["genre_id", "parent", "title", "top_level"])
    counts = pd.Series([g for row in genres.genres_all for g in row]).value_counts()
    table.insert(
        1, "#tracks", counts.reindex(table["genre_id"]).fillna(0).astype(np.int64).to_numpy()
    )
    return table.sort_values("genre_id", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------
# tracks.csv
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# Hidden style: what makes tracks of one artist sound alike.
# ---------------------------------------------------------------------------------------
_STYLE_DIM = 16  # dimensions of the genre/artist/track latent
_N_DESCRIPTORS = 32  # musical descriptors the latent drives (brightness, timbre, key...)
_GENRE_SPREAD = 1.0  # genre centres around the origin
_ARTIST_SPREAD = 0.8  # artists around their genre's centre
_TRACK_SPREAD = 0.85  # tracks around their artist
# An artist's "sound" (recording chain, instrumentation: how bright, how full) changes less
# from track to track than the style does; it drives the spectral shape features.
_SOUND_DIM = 2
_SOUND_TRACK_SPREAD = 0.3
_DESCRIPTOR_GAIN = 1.2  # how far into tanh's saturation the descriptors reach
# Per-track recording nuisances, independent of the artist, each N(0, 1).
_NUISANCES = ("gain", "lofi", "noise", "dynamics")
# The mapping from latent to sound is the same "physics" for every catalogue.
_PHYSICS_SEED = 20_170_101


@dataclass(frozen=True)
class _Style:
    descriptors: np.ndarray  # (n_tracks, _N_DESCRIPTORS) in [-1, 1]
    sound: np.ndarray  # (n_tracks, _SOUND_DIM)
    nuisance: np.ndarray  # (n_tracks, len(_NUISANCES))

    def rows(self, rows: slice) -> _Style:
        return _Style(self.descriptors[rows], self.sound[rows], self.nuisance[rows])


def _draw_style(layout: _Layout, *, rng: np.random.Generator) -> _Style:
    # What a genre sounds like, and how descriptors follow from style, belong to the world
    # rather than to one catalogue: every seed shares them.
    physics = np.random.default_rng(_PHYSICS_SEED)
    genre_style = physics.normal(0, _GENRE_SPREAD, (len(TOP_GENRES), _STYLE_DIM))
    genre_sound = physics.normal(0, _GENRE_SPREAD, (len(TOP_GENRES), _SOUND_DIM))
    mix = physics.normal(0, _DESCRIPTOR_GAIN / np.sqrt(_STYLE_DIM), (_STYLE_DIM, _N_DESCRIPTORS))
    bias = physics.normal(0, 0.5, _N_DESCRIPTORS)
    track = _nested_latent(layout, genre_style, _TRACK_SPREAD, rng=rng)
    return _Style(
        descriptors=np.tanh(track @ mix + bias),
        sound=_nested_latent(layout, genre_sound, _SOUND_TRACK_SPREAD, rng=rng),
        nuisance=rng.standard_normal((len(layout.track_ids), len(_NUISANCES))),
    )


def _nested_latent(
    layout: _Layout, genre: np.ndarray, track_spread: float, *, rng: np.random.Generator
) -> np.ndarray:
    """Track latents near their artist's, artists' near their genre's: (n_tracks, dim)."""
    dim = genre.shape[1]
    artist = genre[layout.artist_genre] + rng.normal(
        0, _ARTIST_SPREAD, (len(layout.artist_ids), dim)
    )
    return artist[layout.track_artist] + rng.normal(0, track_spread, (len(layout.track_ids), dim))


# ---------------------------------------------------------------------------------------
# Frame-level simulation of the 74 librosa series.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Family:
    """How one feature's frame values arise, in pre-transform units (values per series
    are a scalar for all of the feature's series or a tuple with one per series)."""

    # "unit": sigmoid to (0, 1); "signed": tanh; "linear"; "log": exp; "positive": softplus
    transform: str
    centre: float | tuple[float, ...]  # typical location
    style: float | tuple[float, ...]  # how far the artist's descriptors move the location
    song: float | tuple[float, ...]  # how far the song itself moves it (key, melody, mix)
    spread: float | tuple[float, ...]  # frame-to-frame spread
    nuisance: tuple[float | tuple[float, ...], ...]  # location shift per unit nuisance
    envelope: float = 0.0  # correlation with the track's shared loudness envelope
    onset: float = 0.0  # response to transients (drum hits, plosives), in spreads
    sound: float | tuple[float, ...] = 0.0  # how far the artist's sound moves the location
    cap: float = np.inf  # physical ceiling (Nyquist of librosa's default 22,050 Hz)


_MFCC_CENTRE = (-160, 105, -12, 32, -2, 12, -6, 8, -5, 5, -5, 4, -4, 3, -3, 3, -3, 2, -2, 2)
_MFCC_SPREAD = (75, 28, 20, 15, 12, 11, 10, 9, 9, 8, 8, 8, 7, 7, 7, 7, 7, 6, 6, 6)
# Nuisance columns: (gain, lofi, noise, dynamics), see _NUISANCES.
_FAMILIES: dict[str, _Family] = {
    # Pitch-class energy: mostly the song's key and harmony, so songs differ a lot.
    "chroma_cens": _Family(
        "unit", centre=-1.2, style=0.35, song=0.5, spread=0.45, nuisance=(0, 0, 0.06, 0)
    ),
    "chroma_cqt": _Family(
        "unit",
        centre=-0.5,
        style=0.45,
        song=0.66,
        spread=1.0,
        nuisance=(0, 0, 0.1, 0),
        envelope=0.05,
        onset=-0.1,
    ),
    "chroma_stft": _Family(
        "unit",
        centre=-0.6,
        style=0.45,
        song=0.66,
        spread=1.0,
        nuisance=(0, 0.04, 0.12, 0),
        envelope=0.1,
    ),
    # Timbre: the artist's style and sound, the recording's gain, band limit and noise.
    "mfcc": _Family(
        "linear",
        centre=_MFCC_CENTRE,
        style=tuple(0.5 * s for s in _MFCC_SPREAD),
        song=tuple(0.44 * s for s in _MFCC_SPREAD),
        spread=_MFCC_SPREAD,
        nuisance=(
            (12,) + (0,) * 19,  # gain lifts the energy coefficient
            (0, 6, 2.4, -1.8, 1.2) + (0.6,) * 15,  # a band limit tilts the cepstrum
            (4.2, -3.3, -1.2) + (0,) * 17,  # a noise floor flattens the spectrum
            0,
        ),
        sound=(0, -22, 9, 6, 3) + (0,) * 15,
        envelope=0.3,
        onset=0.4,
    ),
    "rmse": _Family(
        "log",
        centre=np.log(0.055),
        style=0.45,
        song=0.44,
        spread=0.45,
        nuisance=(0.18, 0, 0.02, 0),
        envelope=0.9,
        onset=0.25,
        cap=1.0,
    ),
    # Spectral shape in Hz: the artist's sound above all, and the recording's band limit.
    "spectral_bandwidth": _Family(
        "log",
        centre=np.log(1_800),
        style=0.056,
        song=0.028,
        spread=0.18,
        nuisance=(0, -0.058, 0.008, 0),
        sound=0.15,
        envelope=-0.2,
        onset=0.2,
        cap=11_025,
    ),
    "spectral_centroid": _Family(
        "log",
        centre=np.log(1_300),
        style=0.12,
        song=0.055,
        spread=0.3,
        nuisance=(0, -0.105, 0.018, 0),
        sound=0.3,
        envelope=-0.2,
        onset=0.3,
        cap=11_025,
    ),
    # Peak-to-valley level differences in dB: positive, larger in the top band.
    "spectral_contrast": _Family(
        "positive",
        centre=(20, 15, 18, 18, 19, 20, 40),
        style=2.5,
        song=2.15,
        spread=(4, 3.5, 3.5, 3.5, 3.5, 3.5, 5),
        nuisance=(0, (0, 0, 0, 0.2, 0.4, 0.8, 1.2), -0.6, 0),
        sound=(0, 0, 0.75, 1.5, 2.25, 3, 3.75),
        envelope=0.3,
        onset=0.5,
    ),
    "spectral_rolloff": _Family(
        "log",
        centre=np.log(2_800),
        style=0.16,
        song=0.085,
        spread=0.3,
        nuisance=(0, -0.14, 0.018, 0),
        sound=0.35,
        envelope=-0.2,
        onset=0.2,
        cap=10_766.6,
    ),
    "tonnetz": _Family(
        "signed", centre=0.0, style=0.08, song=0.115, spread=0.15, nuisance=(0, 0, 0, 0)
    ),
    "zcr": _Family(
        "log",
        centre=np.log(0.045),
        style=0.21,
        song=0.17,
        spread=0.45,
        nuisance=(0, -0.038, 0.076, 0),
        sound=0.375,
        envelope=0.1,
        onset=0.4,
        cap=1.0,
    ),
}
# Dynamics (compression) widen or narrow the energy series' frame spread.
_DYNAMICS_SPREAD = {"rmse": 0.25, "mfcc": 0.15, "spectral_contrast": 0.1}
_SONG_SPREAD = 0.05  # how much a song's own arrangement changes its frame spread (log units)
_N_FRAMES = 64  # frames per track: enough for stable statistics, cheap to simulate
_CHUNK = 1024  # tracks simulated at once, bounding memory


@dataclass(frozen=True)
class _Physics:
    """Per-series arrays (74 series, FEATURE_SIZES order) and the fixed style loadings."""

    centre: np.ndarray
    style: np.ndarray
    song: np.ndarray
    sound: np.ndarray
    spread: np.ndarray
    envelope: np.ndarray
    onset: np.ndarray
    cap: np.ndarray
    nuisance: np.ndarray  # (74, n_nuisances)
    dynamics: np.ndarray  # (74,) log-spread change per unit dynamics
    location_loadings: np.ndarray  # (74, _N_DESCRIPTORS), unit rows
    spread_loadings: np.ndarray  # (74, _N_DESCRIPTORS), unit rows
    sound_loadings: np.ndarray  # (74, _SOUND_DIM), unit rows
    onset_loadings: np.ndarray  # (_N_DESCRIPTORS,)
    groups: dict[str, np.ndarray]  # series of each transform


def _per_series(value: float | tuple[float, ...], size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (size,))


def _unit_rows(rng: np.random.Generator, rows: int, cols: int = _N_DESCRIPTORS) -> np.ndarray:
    w = rng.standard_normal((rows, cols))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


# _Family fields that become one value per series.
_PER_SERIES = ("centre", "style", "song", "sound", "spread", "envelope", "onset", "cap")


def _physics() -> _Physics:
    fields: dict[str, list[np.ndarray]] = {k: [] for k in (*_PER_SERIES, "dynamics")}
    nuisance, groups, start = [], {}, 0
    for feature, size in FEATURE_SIZES.items():
        fam = _FAMILIES[feature]
        for name in fields:
            value = _DYNAMICS_SPREAD.get(feature, 0.0) if name == "dynamics" else getattr(fam, name)
            fields[name].append(_per_series(value, size))
        nuisance.append(np.stack([_per_series(v, size) for v in fam.nuisance], axis=1))
        groups.setdefault(fam.transform, []).append(np.arange(start, start + size))
        start += size
    rng = np.random.default_rng(_PHYSICS_SEED + 1)
    return _Physics(
        **{k: np.concatenate(v) for k, v in fields.items()},
        nuisance=np.concatenate(nuisance),
        location_loadings=_unit_rows(rng, start),
        spread_loadings=_unit_rows(rng, start),
        onset_loadings=_unit_rows(rng, 1)[0],
        # Positive loadings: a brighter sound raises every brightness measure together.
        sound_loadings=np.abs(_unit_rows(rng, start, _SOUND_DIM)),
        groups={k: np.concatenate(v) for k, v in groups.items()},
    )


def _feature_blocks(
    layout: _Layout, style: _Style, *, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(track_ids, values in FMA column order) per chunk of tracks, in track id order."""
    physics = _physics()
    order, column_series = _fma_order()
    missing = _missing_series(len(layout.track_ids), rng=rng)
    for start in range(0, len(layout.track_ids), _CHUNK):
        rows = slice(start, start + _CHUNK)
        frames = _frames(physics, style.rows(rows), rng=rng)
        stats = _summarise(frames)
        # A C-ordered copy: safe to blank cells in, fast to format.
        values = np.ascontiguousarray(stats.reshape(len(stats), -1)[:, order])
        for row, series in missing.get(start // _CHUNK, []):
            values[row - start, column_series == series] = np.nan
        yield layout.track_ids[rows], values


def _fma_order() -> tuple[np.ndarray, np.ndarray]:
    """Where each FMA column sits in the (series, statistic) flattening, and its series."""
    offsets = np.cumsum([0, *FEATURE_SIZES.values()])
    first = dict(zip(FEATURE_SIZES, offsets[:-1], strict=False))
    series = np.array([first[f] + int(number) - 1 for f, _, number in FEATURE_COLUMNS])
    stat = np.array([STATISTICS.index(s) for _, s, _ in FEATURE_COLUMNS])
    return series * len(STATISTICS) + stat, series


def _missing_series(n_tracks: int, *, rng: np.random.Generator) -> dict[int, list[tuple[int, int]]]:
    """A handful of tracks lose one series' statistics, as a few do in FMA; by chunk."""
    n_missing = min(n_tracks, int(np.ceil(n_tracks * _MISSING_SHARE)))
    rows = np.sort(rng.choice(n_tracks, n_missing, replace=False))
    series = rng.integers(0, sum(FEATURE_SIZES.values()), n_missing)
    by_chunk: dict[int, list[tuple[int, int]]] = {}
    for row, s in zip(rows.tolist(), series.tolist(), strict=True):
        by_chunk.setdefault(row // _CHUNK, []).append((row, s))
    return by_chunk


def _frames(physics: _Physics, style: _Style, *, rng: np.random.Generator) -> np.ndarray:
    """Frame values (tracks, 74 series, _N_FRAMES) in each series' physical units."""
    location, spread = _series_parameters(physics, style, rng=rng)
    n = len(location)
    dynamics = style.nuisance[:, _NUISANCES.index("dynamics")]
    # Transients: busier (percussive, compressed) tracks have more of them.
    rate = 1 / (
        1 + np.exp(3.0 - 1.2 * (style.descriptors @ physics.onset_loadings) - 0.5 * dynamics)
    )
    shape = (n, 1, _N_FRAMES)
    hits = rng.random(shape, dtype=np.float32) < rate[:, None, None]
    onsets = hits * rng.standard_exponential(shape, dtype=np.float32) * np.float32(2.0)
    # The loudness envelope is shared by all series of a track, like a real mix's dynamics.
    envelope = rng.standard_normal(shape, dtype=np.float32)
    # Frames in float32, as librosa computes them; the statistics are float64.
    z = rng.standard_normal((n, len(physics.centre), _N_FRAMES), dtype=np.float32)
    z *= np.sqrt(1 - physics.envelope**2).astype(np.float32)[:, None]
    z += physics.envelope.astype(np.float32)[:, None] * envelope
    z += physics.onset.astype(np.float32)[:, None] * onsets
    z *= spread.astype(np.float32)[..., None]
    z += location.astype(np.float32)[..., None]
    return _to_physical(z, physics)


def _series_parameters(
    physics: _Physics, style: _Style, *, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each track's location and frame spread per series (tracks, 74), pre-transform."""
    shape = (len(style.descriptors), len(physics.centre))
    dynamics = style.nuisance[:, _NUISANCES.index("dynamics")]
    location = (
        physics.centre
        + physics.style * (style.descriptors @ physics.location_loadings.T)
        + physics.sound * (style.sound @ physics.sound_loadings.T)
        + style.nuisance @ physics.nuisance.T
        # Each song's own content (its key, its melody) differs from its artist's other songs.
        + physics.song * rng.standard_normal(shape)
    )
    spread = physics.spread * np.exp(
        0.3 * (style.descriptors @ physics.spread_loadings.T)
        + physics.dynamics * dynamics[:, None]
        + _SONG_SPREAD * rng.standard_normal(shape)
    )
    return location, spread


def _to_physical(x: np.ndarray, physics: _Physics) -> np.ndarray:
    """Map pre-transform values to each feature's range ((0, 1) chroma, Hz, ...)."""
    for transform, idx in physics.groups.items():
        if transform == "unit":
            x[:, idx] = 1 / (1 + np.exp(-x[:, idx]))
        elif transform == "signed":
            x[:, idx] = np.tanh(x[:, idx])
        elif transform == "positive":
            x[:, idx] = np.logaddexp(0, x[:, idx])
        elif transform == "log":
            x[:, idx] = np.minimum(np.exp(x[:, idx]), physics.cap[idx][:, None])
    return x


def _summarise(frames: np.ndarray) -> np.ndarray:
    """The 7 statistics over the last axis, in STATISTICS order (scipy's biased skew and
    Fisher kurtosis, numpy's population std).

    A constant series has no defined skew or kurtosis; both are written as 0.
    """
    frames.sort(axis=-1)  # in place; order does not matter, and sorted gives min/median/max
    mean = frames.mean(-1)
    dev = frames - mean[..., None]
    dev2 = dev * dev
    m2 = dev2.mean(-1)
    m3 = (dev2 * dev).mean(-1)
    m4 = (dev2 * dev2).mean(-1)
    # Constant up to float32 rounding (about 1e-7 of the value) counts as constant.
    flat = m2 <= (1e-6 * np.abs(mean)) ** 2
    safe = np.where(flat, 1.0, m2)
    lo, hi = frames[..., 0], frames[..., -1]
    half = frames.shape[-1] // 2
    median = (
        (frames[..., half - 1] + frames[..., half]) / 2
        if half * 2 == frames.shape[-1]
        else frames[..., half]
    )
    stats = {
        "kurtosis": np.where(flat, 0.0, m4 / safe**2 - 3.0),
        "max": hi,
        "mean": np.clip(mean, lo, hi),  # summation rounding must not leave [min, max]
        "median": median,
        "min": lo,
        "skew": np.where(flat, 0.0, m3 / safe**1.5),
        "std": np.sqrt(m2),
    }
    return np.stack([stats[s] for s in STATISTICS], axis=-1).astype(np.float64)


# ---------------------------------------------------------------------------------------
# features.csv: pandas' to_csv(float_format="%.10e") is too slow for millions of cells
# (about 13 s for the default catalogue), so the rows are formatted with numpy into the
# very same bytes.
# ---------------------------------------------------------------------------------------
_POW10 = np.array([float(f"1e{i}") for i in range(309)])  # exactly rounded powers of ten
# '0000'..'9999' as 4 ASCII bytes each, viewed as one uint32 per number for fast lookup.
_FOUR_DIGITS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)
_FIELD = 18  # '-d.dddddddddde+dd' and a separator


def _write_features(path: Path, blocks: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
    columns = pd.MultiIndex.from_tuples(FEATURE_COLUMNS, names=list(HEADER_NAMES))
    empty = pd.DataFrame(columns=columns, index=pd.Index([], name=INDEX_NAME))
    with path.open("wb") as fh:
        fh.write(empty.to_csv(lineterminator="\n").encode())
        for ids, values in blocks:
            fh.write(_csv_rows(ids, values))


def _csv_rows(ids: np.ndarray, values: np.ndarray) -> bytes:
    """Rows 'id,v1,...,vn\\n' exactly as to_csv(float_format='%.10e') writes them (NaN empty)."""
    chars, keep = _e10_fields(values)
    chars[:, :, -1] = ord(",")
    chars[:, -1, -1] = ord("\n")
    id_chars, id_keep = _int_fields(ids)
    rows = np.concatenate([id_chars, chars.reshape(len(ids), -1)], axis=1)
    mask = np.concatenate([id_keep, keep.reshape(len(ids), -1)], axis=1)
    return rows[mask].tobytes()


def _int_fields(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned decimal digits of non-negative ints plus ',', and which chars to keep."""
    width = len(str(int(ids.max())))
    digits = (ids[:, None] // 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)) % 10
    keep = np.maximum.accumulate(digits > 0, axis=1)
    keep[:, -1] = True
    chars = np.concatenate([digits + ord("0"), np.full((len(ids), 1), ord(","))], axis=1)
    return chars.astype(np.uint8), np.concatenate([keep, np.ones((len(ids), 1), bool)], axis=1)


def _e10_fields(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-width '%.10e' fields (last char left for a separator) and which chars to keep."""
    finite = np.isfinite(values)
    mantissa, exponent = _e10_parts(np.where(finite, values, 0.0))
    chars = np.empty((*values.shape, _FIELD), dtype=np.uint8)
    chars[..., 0] = ord("-")
    # 11 digits as 3 + 4 + 4 looked up in a table of 4-digit strings.
    high, low = np.divmod(mantissa, 10**8)
    lead = _ascii4(high)  # '0ddd': the mantissa's first three digits
    chars[..., 1] = lead[..., 1]
    chars[..., 2] = ord(".")
    chars[..., 3:5] = lead[..., 2:]
    chars[..., 5:9] = _ascii4(low // 10**4)
    chars[..., 9:13] = _ascii4(low % 10**4)
    chars[..., 13] = ord("e")
    chars[..., 14] = np.where(exponent < 0, ord("-"), ord("+"))
    chars[..., 15:17] = _ascii4(np.abs(exponent))[..., 2:]
    keep = np.repeat(finite[..., None], _FIELD, axis=-1)
    keep[..., 0] &= np.signbit(values)
    keep[..., -1] = True
    return chars, keep


def _ascii4(numbers: np.ndarray) -> np.ndarray:
    """Zero-padded 4-digit ASCII of ints in [0, 9999], shape (..., 4)."""
    return _FOUR_DIGITS[numbers.ravel()].view(np.uint8).reshape(*numbers.shape, 4)


def _e10_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer mantissa (11 digits) and exponent of each value, rounded as '%.10e' rounds."""
    size = np.abs(values)
    nonzero = size > 0
    exponent = np.floor(np.log10(np.where(nonzero, size, 1.0))).astype(np.int64)
    scaled = _times_pow10(size, 10 - exponent)
    mantissa = np.rint(scaled).astype(np.int64)
    # The product carries one rounding (< 1e-5 here): where that could flip the last digit,
    # or log10 missed by one next to a power of ten, Python's own formatter decides.
    unsure = nonzero & (
        (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4)
        | (mantissa < 10**10)
        | (mantissa >= 10**11)
    )
    for i in np.flatnonzero(unsure):
        digits, exp = (f"{values.flat[i]:.10e}").lstrip("-").split("e")
        mantissa.flat[i], exponent.flat[i] = int(digits.replace(".", "")), int(exp)
    if np.any(np.abs(exponent) > 99):
        raise ValueError("feature values beyond 1e+-99 cannot be written in FMA's format")
    return mantissa, exponent


def _times_pow10(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """x * 10**k with one rounding: dividing by an exact power of ten when k < 0."""
    power = _POW10[np.minimum(np.abs(k), len(_POW10) - 1)]
    if np.all(k >= 0):  # the usual case: every value below 1e10
        return x * power
    return np.where(k >= 0, x * power, x / power)
