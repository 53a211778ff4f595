"""Tests of the synthetic FMA-format catalogue, each against FMA's format or an independent
recount rather than against the generator's own constants."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.features import FEATURE_COLUMNS, FEATURE_SIZES, STATISTICS
from training.data.synthetic import DEFAULT_ARTISTS, DEFAULT_TRACKS
from training.data.synthetic.catalogue import DemoCatalogue, write_demo_catalogue
from training.data.synthetic.features_csv import _csv_rows

N_TRACKS, N_ARTISTS = 600, 90

# FMA's tracks.csv columns, in the file's order (from the FMA metadata release).
FMA_TRACK_COLUMNS = [
    ("album", f)
    for f in [
        "comments", "date_created", "date_released", "engineer", "favorites", "id",
        "information", "listens", "producer", "tags", "title", "tracks", "type",
    ]
] + [
    ("artist", f)
    for f in [
        "active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
        "date_created", "favorites", "id", "latitude", "location", "longitude", "members",
        "name", "related_projects", "tags", "website", "wikipedia_page",
    ]
] + [("set", "split"), ("set", "subset")] + [
    ("track", f)
    for f in [
        "bit_rate", "comments", "composer", "date_created", "date_recorded", "duration",
        "favorites", "genre_top", "genres", "genres_all", "information", "interest",
        "language_code", "license", "listens", "lyricist", "number", "publisher", "tags",
        "title",
    ]
]  # fmt: skip

# FMA's top-level genres and their real ids.
FMA_TOP_GENRES = {
    3: "Blues", 5: "Classical", 9: "Country", 13: "Easy Listening", 15: "Electronic",
    38: "Experimental", 17: "Folk", 21: "Hip-Hop", 1235: "Instrumental", 2: "International",
    4: "Jazz", 8: "Old-Time / Historic", 10: "Pop", 12: "Rock", 14: "Soul-RnB", 20: "Spoken",
}  # fmt: skip


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> DemoCatalogue:
    out = tmp_path_factory.mktemp("demo") / "nested" / "dir"  # created on demand
    return write_demo_catalogue(out_dir=out, n_tracks=N_TRACKS, n_artists=N_ARTISTS, seed=3)


@pytest.fixture(scope="module")
def tracks(catalogue: DemoCatalogue) -> pd.DataFrame:
    return pd.read_csv(catalogue.out_dir / "tracks.csv", index_col=0, header=[0, 1])


@pytest.fixture(scope="module")
def features(catalogue: DemoCatalogue) -> pd.DataFrame:
    return pd.read_csv(catalogue.out_dir / "features.csv", index_col=0, header=[0, 1, 2])


@pytest.fixture(scope="module")
def genres(catalogue: DemoCatalogue) -> pd.DataFrame:
    return pd.read_csv(catalogue.out_dir / "genres.csv")


def _stat(features: pd.DataFrame, feature: str, statistic: str) -> np.ndarray:
    return features.loc[:, (feature, statistic)].to_numpy()


# --- summary and arguments ------------------------------------------------------------


def test_summary_describes_what_was_written(catalogue: DemoCatalogue) -> None:
    assert catalogue.n_tracks == N_TRACKS
    assert catalogue.n_artists == N_ARTISTS
    assert catalogue.n_genres == 16
    assert sorted(p.name for p in catalogue.out_dir.iterdir()) == [
        "features.csv",
        "genres.csv",
        "tracks.csv",
    ]


def test_default_size_keeps_fma_ratio_of_tracks_to_artists() -> None:
    ratio = DEFAULT_TRACKS / DEFAULT_ARTISTS
    assert ratio == pytest.approx(106_574 / 16_341, rel=0.01)


@pytest.mark.parametrize(
    ("n_tracks", "n_artists", "match"),
    [(10, 0, "n_artists"), (10, -3, "n_artists"), (5, 6, "n_tracks")],
)
def test_bad_sizes_raise(tmp_path: Path, n_tracks: int, n_artists: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_demo_catalogue(out_dir=tmp_path, n_tracks=n_tracks, n_artists=n_artists)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_tiny_catalogue_works(tmp_path: Path) -> None:
    demo = write_demo_catalogue(out_dir=tmp_path, n_tracks=3, n_artists=3, seed=1)
    tracks = pd.read_csv(tmp_path / "tracks.csv", index_col=0, header=[0, 1])
    assert demo.n_genres <= 3
    assert tracks[("artist", "id")].nunique() == 3


# --- determinism ----------------------------------------------------------------------


def _files(out_dir: Path) -> dict[str, bytes]:
    return {name: (out_dir / name).read_bytes() for name in ("tracks.csv", "features.csv")}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"n_tracks": 150, "n_artists": 25}
    write_demo_catalogue(out_dir=tmp_path / "a", seed=7, **kwargs)
    write_demo_catalogue(out_dir=tmp_path / "b", seed=7, **kwargs)
    write_demo_catalogue(out_dir=tmp_path / "c", seed=8, **kwargs)
    a, b, c = (_files(tmp_path / d) for d in "abc")
    assert a == b
    assert (tmp_path / "a" / "genres.csv").read_bytes() == (
        tmp_path / "b" / "genres.csv"
    ).read_bytes()
    assert a["tracks.csv"] != c["tracks.csv"]
    assert a["features.csv"] != c["features.csv"]


# --- tracks.csv -----------------------------------------------------------------------


def test_tracks_have_fma_columns_and_index(tracks: pd.DataFrame) -> None:
    assert list(tracks.columns) == FMA_TRACK_COLUMNS
    assert tracks.index.name == "track_id"
    assert len(tracks) == N_TRACKS


def test_track_ids_are_unique_sorted_positive_with_gaps(tracks: pd.DataFrame) -> None:
    ids = tracks.index.to_numpy()
    assert np.issubdtype(ids.dtype, np.integer)
    assert ids.min() > 0
    assert np.all(np.diff(ids) > 0)  # sorted and unique
    assert np.any(np.diff(ids) > 1)  # not contiguous, like FMA's


def test_artists_have_unique_ids_and_one_name_and_place(tracks: pd.DataFrame) -> None:
    artist = tracks[("artist", "id")]
    assert artist.nunique() == N_ARTISTS
    for field in ("name", "location", "latitude", "longitude"):
        per_artist = tracks[("artist", field)].groupby(artist).nunique(dropna=False)
        assert (per_artist == 1).all(), field


def test_tracks_per_artist_are_heavy_tailed(tracks: pd.DataFrame) -> None:
    counts = tracks[("artist", "id")].value_counts()
    assert counts.sum() == N_TRACKS
    assert counts.min() >= 1
    single_share = (counts == 1).mean()
    assert 0.3 < single_share < 0.65  # FMA: 48% of artists have one track
    assert counts.max() >= 5 * counts.median()


def test_every_artist_has_one_main_genre(tracks: pd.DataFrame) -> None:
    top_ids = set(FMA_TOP_GENRES)
    for _, group in tracks.groupby(tracks[("artist", "id")]):
        tops = [set(ast.literal_eval(g)) & top_ids for g in group[("track", "genres_all")]]
        assert set.intersection(*tops), "an artist's tracks share its main genre"
        assert group[("track", "genre_top")].dropna().nunique() <= 1


def test_genre_top_is_empty_exactly_for_tracks_spanning_two_genres(
    tracks: pd.DataFrame,
) -> None:
    genre_top = tracks[("track", "genre_top")]
    assert 0.1 < genre_top.isna().mean() < 0.3  # FMA leaves genre_top empty for many tracks
    for top, listed, all_ids in zip(
        genre_top, tracks[("track", "genres")], tracks[("track", "genres_all")], strict=True
    ):
        ids, parents = ast.literal_eval(listed), ast.literal_eval(all_ids)
        assert ids and set(ids) <= set(parents)
        assert listed == "[" + ", ".join(map(str, ids)) + "]"  # FMA's '[21, 811]' style
        tops = [FMA_TOP_GENRES[g] for g in parents if g in FMA_TOP_GENRES]
        assert tops == [top] if isinstance(top, str) else len(tops) == 2


def test_set_and_metadata_fields_hold_fma_values(tracks: pd.DataFrame) -> None:
    assert set(tracks[("set", "split")]) <= {"training", "validation", "test"}
    assert set(tracks[("set", "subset")]) <= {"small", "medium", "large"}
    assert (tracks[("track", "duration")] > 0).all()
    assert (tracks[("track", "listens")] >= 0).all()
    assert tracks[("track", "license")].notna().all()
    assert tracks[("track", "title")].notna().all()
    assert tracks[("album", "title")].notna().all()
    assert tracks[("track", "genre_top")].dropna().isin(FMA_TOP_GENRES.values()).all()
    # Each album belongs to one artist.
    assert (tracks[("artist", "id")].groupby(tracks[("album", "id")]).nunique() == 1).all()


def test_some_artists_are_located_near_real_cities(tracks: pd.DataFrame) -> None:
    artists = tracks.groupby(tracks[("artist", "id")]).first()
    lat, lon = artists[("artist", "latitude")], artists[("artist", "longitude")]
    located = lat.notna()
    assert 0.15 < located.mean() < 0.55  # roughly a third, as in FMA
    assert (lon.notna() == located).all()
    assert lat.dropna().between(-90, 90).all() and lon.dropna().between(-180, 180).all()
    # Clustered: far fewer distinct whole-degree cells than located artists.
    cells = set(zip(lat.dropna().round(), lon.dropna().round(), strict=True))
    assert len(cells) < 0.8 * located.sum()


# --- genres.csv -----------------------------------------------------------------------


def test_genres_have_fma_columns_and_real_top_level_ids(genres: pd.DataFrame) -> None:
    assert list(genres.columns) == ["genre_id", "#tracks", "parent", "title", "top_level"]
    top = genres[genres["parent"] == 0]
    assert dict(zip(top["genre_id"], top["title"], strict=True)) == FMA_TOP_GENRES
    assert (top["top_level"] == top["genre_id"]).all()
    sub = genres[genres["parent"] != 0]
    assert len(sub) >= 2 * len(FMA_TOP_GENRES)
    assert sub["parent"].isin(FMA_TOP_GENRES).all()
    assert (sub["top_level"] == sub["parent"]).all()
    assert genres["genre_id"].is_unique


def test_genre_track_counts_match_the_tracks(genres: pd.DataFrame, tracks: pd.DataFrame) -> None:
    listed = [g for row in tracks[("track", "genres_all")] for g in ast.literal_eval(row)]
    recount = pd.Series(listed).value_counts()
    expected = recount.reindex(genres["genre_id"]).fillna(0).astype(int).to_numpy()
    assert (genres["#tracks"].to_numpy() == expected).all()


# --- features.csv ---------------------------------------------------------------------


def test_features_file_starts_with_fma_header_rows(catalogue: DemoCatalogue) -> None:
    with (catalogue.out_dir / "features.csv").open() as fh:
        head = [next(fh).rstrip("\n") for _ in range(5)]
    assert head[0].startswith("feature,chroma_cens,chroma_cens,")
    assert head[1].startswith("statistics,kurtosis,kurtosis,")
    assert head[2].startswith("number,01,02,")
    assert head[3] == "track_id" + "," * 518
    assert len(head[4].split(",")) == 519


def test_features_have_518_columns_in_fma_order(
    features: pd.DataFrame, tracks: pd.DataFrame
) -> None:
    cols = list(features.columns)
    assert len(cols) == 518 == 7 * sum(FEATURE_SIZES.values())
    assert cols == sorted(cols)  # FMA sorts by (feature, statistics, number)
    assert cols == list(FEATURE_COLUMNS)
    assert features.columns.names == ["feature", "statistics", "number"]
    assert features.index.name == "track_id"
    assert (features.index == tracks.index).all()
    assert all(dtype == np.float64 for dtype in features.dtypes)


def test_features_are_written_exactly_as_pandas_writes_them(
    catalogue: DemoCatalogue, features: pd.DataFrame
) -> None:
    written = (catalogue.out_dir / "features.csv").read_text()
    assert features.to_csv(float_format="%.10e") == written


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.0, -1.5, 9.99999999995e3, 9.9999999999949e3, 1e-5, 123456.789, 7.25e-13,
     0.1, 2.5e-7, 1.00000000005, np.nan, 6.02e23, -3.3e-40],
)  # fmt: skip
def test_fast_float_writer_matches_pandas(value: float) -> None:
    values = np.array([[value, -value, value * 3.7]])
    ids = np.array([1234])
    expected = pd.DataFrame(values, index=ids).to_csv(
        float_format="%.10e", header=False, lineterminator="\n"
    )
    assert _csv_rows(ids, values).decode() == expected


def test_a_handful_of_tracks_miss_values(catalogue: DemoCatalogue, features: pd.DataFrame) -> None:
    missing = features.isna().any(axis=1)
    assert 1 <= missing.sum() <= 0.02 * len(features)
    row = str(missing[missing].index[0])
    line = next(
        ln for ln in (catalogue.out_dir / "features.csv").read_text().splitlines()
        if ln.startswith(row + ",")
    )  # fmt: skip
    assert ",," in line  # an empty cell, as FMA writes a missing value


def test_statistics_of_each_series_are_consistent(features: pd.DataFrame) -> None:
    f = features.dropna()
    for feature in FEATURE_SIZES:
        lo, hi = _stat(f, feature, "min"), _stat(f, feature, "max")
        med, mean = _stat(f, feature, "median"), _stat(f, feature, "mean")
        assert (lo <= med).all() and (med <= hi).all(), feature
        assert (lo <= mean).all() and (mean <= hi).all(), feature
        assert (_stat(f, feature, "std") >= 0).all(), feature
        assert (_stat(f, feature, "kurtosis") >= -2).all(), feature
    for chroma in ("chroma_cens", "chroma_cqt", "chroma_stft"):
        values = f.loc[:, chroma].to_numpy()
        stats = f.loc[:, chroma].columns.get_level_values(0)
        bounded = values[:, np.isin(stats, ["min", "max", "mean", "median", "std"])]
        assert (bounded >= 0).all() and (bounded <= 1).all(), chroma
    tonnetz = f.loc[:, "tonnetz"]
    for stat in ("min", "max", "mean", "median"):
        assert (tonnetz.loc[:, stat].abs() <= 1).all().all()


def test_shape_statistics_are_heavy_tailed_and_of_both_signs(features: pd.DataFrame) -> None:
    kurtosis = features.xs("kurtosis", axis=1, level=1).to_numpy()
    skew = features.xs("skew", axis=1, level=1).to_numpy()
    assert np.nanmax(kurtosis) > 10
    assert np.nanmedian(kurtosis) < 3
    assert np.nanmin(skew) < -0.5 and np.nanmax(skew) > 0.5


def test_column_scales_span_orders_of_magnitude_like_librosa(features: pd.DataFrame) -> None:
    def med(feature: str, number: str = "01") -> float:
        return float(np.nanmedian(features[(feature, "mean", number)]))

    assert abs(med("spectral_centroid")) > 100 * med("zcr")
    assert 300 < med("spectral_centroid") < 5_000
    assert 500 < med("spectral_rolloff") < 9_000
    assert 500 < med("spectral_bandwidth") < 5_000
    assert 0.01 < med("zcr") < 0.2
    assert 0.01 < med("rmse") < 0.5
    assert -300 < med("mfcc", "01") < -50
    later = [abs(med("mfcc", f"{i:02d}")) for i in range(3, 21)]
    assert max(later) < 50
    assert all(5 < med("spectral_contrast", f"{i:02d}") < 60 for i in range(1, 8))


def test_statistics_order_is_fmas() -> None:
    # The layout tests above rely on FMA's statistic names.
    assert STATISTICS == ("kurtosis", "max", "mean", "median", "min", "skew", "std")
