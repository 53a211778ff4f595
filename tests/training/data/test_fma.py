"""The FMA loader: round trip against pandas, the cache, and errors on broken files."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import fma
from training.data.features import FEATURE_COLUMNS
from training.data.fma import FMAFormatError, load_catalogue, remembered_sha256


@pytest.fixture
def data_dir(small_catalogue_dir, tmp_path) -> Path:
    """A private copy that a test may break."""
    out = tmp_path / "fma"
    shutil.copytree(small_catalogue_dir, out)
    return out


def test_catalogue_matches_a_plain_pandas_read(small_catalogue_dir, tmp_path):
    cat = load_catalogue(data_dir=small_catalogue_dir, cache_dir=tmp_path)
    features = pd.read_csv(small_catalogue_dir / "features.csv", index_col=0, header=[0, 1, 2])
    tracks = pd.read_csv(small_catalogue_dir / "tracks.csv", index_col=0, header=[0, 1])
    finite = features.notna().all(axis=1)
    expected_ids = sorted(set(features.index[finite]) & set(tracks.index))
    assert cat.track_ids.tolist() == expected_ids
    assert cat.n_dropped == int((~finite).sum())
    expected = features.loc[expected_ids, list(FEATURE_COLUMNS)].to_numpy(np.float32)
    np.testing.assert_array_equal(cat.features, expected)
    assert (cat.artist_ids == tracks.loc[expected_ids, ("artist", "id")].to_numpy()).all()
    assert cat.tracks["title"].tolist() == tracks.loc[expected_ids, ("track", "title")].tolist()
    genre = tracks.loc[expected_ids, ("track", "genre_top")]
    assert cat.tracks["genre"].isna().tolist() == genre.isna().tolist()
    lat = tracks.loc[expected_ids, ("artist", "latitude")].to_numpy(np.float64)
    np.testing.assert_array_equal(cat.tracks["latitude"].to_numpy(), lat)


def test_second_load_reads_the_cache_not_the_csv(data_dir, monkeypatch):
    first = load_catalogue(data_dir=data_dir)

    def no_parsing(path):
        raise AssertionError("features.csv was parsed again")

    monkeypatch.setattr(fma, "parse_features_csv", no_parsing)
    second = load_catalogue(data_dir=data_dir)
    np.testing.assert_array_equal(first.features, second.features)


def test_a_changed_file_is_parsed_again(data_dir):
    load_catalogue(data_dir=data_dir)
    path = data_dir / "features.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # drop the last track
    cat = load_catalogue(data_dir=data_dir)
    assert int(lines[-1].split(",")[0]) not in set(cat.track_ids.tolist())


def test_rows_with_missing_or_infinite_features_are_dropped_and_counted(data_dir):
    before = load_catalogue(data_dir=data_dir)
    path = data_dir / "features.csv"
    lines = path.read_text().splitlines(keepends=True)
    victims = []
    for row, bad in ((4, ""), (5, "inf"), (6, "nan")):
        cells = lines[row].split(",")
        cells[7] = bad
        victims.append(int(cells[0]))
        lines[row] = ",".join(cells)
    path.write_text("".join(lines))
    after = load_catalogue(data_dir=data_dir)
    assert not set(victims) & set(after.track_ids.tolist())
    assert after.n_dropped == before.n_dropped + len(set(victims) & set(before.track_ids.tolist()))


def _rewrite(path: Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def _drop_column(lines, index):
    return [
        ",".join(c for i, c in enumerate(line.rstrip("\n").split(",")) if i != index) + "\n"
        for line in lines
    ]


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("features.csv", lambda ls: ls[1:], "line 1 should start with 'feature'"),
        ("features.csv", lambda ls: ls[:3] + ls[4:], "'track_id' row"),
        ("features.csv", lambda ls: _drop_column(ls, 5), "not FMA's 518"),
        ("features.csv", lambda ls: [*ls[:5], ls[5].replace("e", "x", 3), *ls[6:]], "not a number"),
        ("tracks.csv", lambda ls: ls[1:], "'track_id' row"),
        ("genres.csv", lambda ls: [ls[0].replace("top_level", "top")] + ls[1:], "top_level"),
    ],
)
def test_broken_files_stop_with_an_error_naming_file_and_problem(data_dir, name, edit, message):
    _rewrite(data_dir / name, edit)
    with pytest.raises(FMAFormatError) as info:
        load_catalogue(data_dir=data_dir)
    assert name in str(info.value) and message in str(info.value)


def test_tracks_without_a_required_column_are_refused(data_dir):
    path = data_dir / "tracks.csv"
    tracks = pd.read_csv(path, index_col=0, header=[0, 1])
    tracks.drop(columns=[("artist", "id")]).to_csv(path)
    with pytest.raises(FMAFormatError, match=r"tracks.csv: missing column\(s\) artist.id"):
        load_catalogue(data_dir=data_dir)


def test_a_missing_file_is_named(data_dir):
    (data_dir / "genres.csv").unlink()
    with pytest.raises(FMAFormatError, match="genres.csv: file not found"):
        load_catalogue(data_dir=data_dir)


def test_a_genres_file_with_a_header_only_is_accepted(data_dir):
    (data_dir / "genres.csv").write_text("genre_id,#tracks,parent,title,top_level\n")
    assert len(load_catalogue(data_dir=data_dir).genres) == 0


@pytest.mark.parametrize("name", ["tracks.csv", "genres.csv", "features.csv"])
@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\n"])
def test_empty_or_binary_files_are_named(data_dir, name, content):
    (data_dir / name).write_bytes(content)
    with pytest.raises(FMAFormatError, match=name):
        load_catalogue(data_dir=data_dir)


def test_a_files_hash_is_remembered_until_its_size_or_mtime_changes(tmp_path):
    path = tmp_path / "features.csv"
    path.write_bytes(b"first content")
    first = remembered_sha256(path)
    assert first == hashlib.sha256(b"first content").hexdigest()
    memo = next((tmp_path / ".musicsim-cache").glob("*.json"))
    assert json.loads(memo.read_text())["sha256"] == first
    path.write_bytes(b"other content")  # same size: only the mtime tells them apart
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert remembered_sha256(path) == hashlib.sha256(b"other content").hexdigest()
