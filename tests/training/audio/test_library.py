"""The library scan's tags: cleaned text, plain genre mapping, file-name fallbacks."""

import mutagen
import numpy as np
import pytest
import soundfile as sf

from training.audio.library import LibraryError, check_root, clean_text, map_genre, scan_library

SR = 22_050


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Title\x00", "Title"),
        ("  two   spaces ", "two spaces"),
        (b"caf\xe9 bytes", "caf bytes"),  # not UTF-8: the bad byte goes
        ("lone \udce9 surrogate", "lone surrogate"),
        ("\x00\x00", None),
        (None, None),
    ],
)
def test_tag_text_is_cleaned_of_nul_and_invalid_utf8(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    ("tag", "genre"),
    [
        ("rock", "Rock"),
        ("HIP-HOP", "Hip-Hop"),
        ("Hip Hop", "Hip-Hop"),
        ("R&B", "Soul-RnB"),
        ("old-time / historic", "Old-Time / Historic"),
        ("Drum & Bass", None),  # not plain: no guess
        ("Progressive Death Polka", None),
        (None, None),
    ],
)
def test_genre_tags_map_onto_fma_top_level_genres_only_when_plain(tag, genre):
    assert map_genre(tag) == genre


def test_tags_are_read_and_files_without_them_fall_back_to_their_names(tmp_path):
    root = tmp_path / "music"
    root.mkdir()
    noise = np.random.default_rng(0).normal(0, 0.1, 3 * SR).astype(np.float32)
    sf.write(root / "tagged.flac", noise, SR)
    tagged = mutagen.File(root / "tagged.flac")
    tagged["title"], tagged["artist"] = "Song\x00 One", "The\x00 Band"
    tagged["album"], tagged["albumartist"] = "First", "The Band"
    tagged["genre"], tagged["tracknumber"] = "jazz", "3/12"
    tagged.save()
    sf.write(root / "Someone - Named Song.wav", noise, SR)
    sf.write(root / "untitled.wav", noise, SR)
    scan = scan_library(root=root, state_dir=tmp_path / "state", excerpt_seconds=None)
    tracks = {t.file: t for t in scan.tracks}
    song = tracks["tagged.flac"]
    assert (song.title, song.artist, song.album, song.album_artist) == (
        "Song One",
        "The Band",
        "First",
        "The Band",
    )
    assert (song.genre, song.genre_tag, song.track_number) == ("Jazz", "jazz", 3)
    assert (
        tracks["Someone - Named Song.wav"].artist,
        tracks["Someone - Named Song.wav"].title,
    ) == (
        "Someone",
        "Named Song",
    )
    assert tracks["untitled.wav"].artist is None  # no made-up artist
    again = scan_library(root=root, state_dir=tmp_path / "state", excerpt_seconds=None)
    assert again.analysed == 0 and len(again.tracks) == 3


def test_a_root_that_is_missing_or_not_a_folder_is_refused(tmp_path):
    with pytest.raises(LibraryError, match="no such folder"):
        check_root(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="not a folder"):
        check_root(tmp_path / "file")
