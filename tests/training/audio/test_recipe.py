"""Audio decoding, FMA-recipe features and the extraction job, on real recordings.

Expectations come from outside the code: the recipe's ranges, signals whose
features are known in closed form (a sine's zero-crossing rate, white noise's
energy), scipy's statistics, soundfile's own frame counts, and the clips' tags.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import librosa
import mutagen
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from paths import AUDIO_DIR, real_clip, real_clips
from scipy import stats

from training.audio.extraction import extract_catalogue
from training.audio.recipe import (
    CONSTANT_KURTOSIS,
    CONSTANT_SKEW,
    AudioError,
    decode,
    extract_features,
    features_from_file,
)
from training.data.features import FEATURE_COLUMNS, FEATURE_SIZES, STATISTICS, column_index
from training.data.fma import load_catalogue

LONG_CLIP = "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"  # 133 s
SHORT_CLIP = "sorohanro_-_solo-trumpet-06.ogg"  # 5.3 s
TAGGED_CLIP = "Kevin_MacLeod_-_Vibe_Ace.ogg"  # title and artist tags
NAMED_CLIP = "admiralbob77_-_Choice_-_Drum-bass.ogg"  # no title/artist tags
ARTIST_ONLY_CLIP = "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.ogg"
SR = 22_050

# librosa warns when it estimates tuning on a signal without pitched content.
quiet_tuning = pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning")


@pytest.fixture(scope="module")
def audio_dir() -> Path:
    """The real clips' folder; a failure naming it when a clip this module uses is absent."""
    for name in (LONG_CLIP, SHORT_CLIP, TAGGED_CLIP, NAMED_CLIP, ARTIST_ONLY_CLIP):
        real_clip(name)
    return AUDIO_DIR


@pytest.fixture(scope="module")
def analysed(audio_dir) -> dict[str, tuple[np.ndarray, int, np.ndarray]]:
    """Each clip's decoded 30 s excerpt, its rate and its features, computed once."""
    out = {}
    for path in real_clips():
        signal, sr = decode(path)
        out[path.name] = (signal, sr, extract_features(signal=signal, sr=sr))
    return out


def _sine(*, freq: float, sr: int, seconds: float = 5.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _stat(features: np.ndarray, feature: str, statistic: str) -> np.ndarray:
    return features[column_index(feature, statistic)]


# --- features on the real clips ----------------------------------------------------------


def test_every_clip_gives_518_finite_float32_values(analysed):
    assert len(analysed) == 8
    for name, (_, _, features) in analysed.items():
        assert features.shape == (518,), name
        assert features.dtype == np.float32, name
        assert np.isfinite(features).all(), name


def test_the_same_file_gives_identical_numbers_twice(analysed, audio_dir):
    again = features_from_file(audio_dir / TAGGED_CLIP)
    np.testing.assert_array_equal(again, analysed[TAGGED_CLIP][2])


def test_features_stay_in_the_ranges_the_recipe_implies(analysed):
    location = ("max", "mean", "median", "min")
    for name, (_, _, f) in analysed.items():
        for feature in ("chroma_cqt", "chroma_cens", "chroma_stft", "zcr"):
            for statistic in location:  # chroma is max- or L2-normalised; zcr a fraction
                values = _stat(f, feature, statistic)
                assert ((values >= 0) & (values <= 1)).all(), (name, feature, statistic)
        for statistic in location:  # tonnetz projects an L1-normalised chroma on unit circles
            assert (np.abs(_stat(f, "tonnetz", statistic)) <= 1).all(), name
        for feature in FEATURE_SIZES:
            lo, hi = _stat(f, feature, "min"), _stat(f, feature, "max")
            assert (_stat(f, feature, "std") >= 0).all(), (name, feature)
            assert (lo <= _stat(f, feature, "median")).all(), (name, feature)
            assert (_stat(f, feature, "median") <= hi).all(), (name, feature)
            assert (lo <= _stat(f, feature, "mean")).all(), (name, feature)
            assert (_stat(f, feature, "mean") <= hi).all(), (name, feature)
        # The STFT features read frequencies on librosa's default 22,050 Hz axis.
        for feature in ("spectral_centroid", "spectral_rolloff", "spectral_bandwidth"):
            assert _stat(f, feature, "max")[0] <= 11_025, (name, feature)


def test_statistics_are_scipys_over_the_frames_in_fma_column_order(analysed):
    signal, _, f = analysed[TAGGED_CLIP]
    zcr = librosa.feature.zero_crossing_rate(signal, frame_length=2048, hop_length=512)[0]
    expected = {
        "kurtosis": stats.kurtosis(zcr),  # Fisher
        "max": zcr.max(),
        "mean": zcr.mean(),
        "median": np.median(zcr),
        "min": zcr.min(),
        "skew": stats.skew(zcr),
        "std": zcr.std(),
    }
    found = {s: f[FEATURE_COLUMNS.index(("zcr", s, "01"))] for s in STATISTICS}
    for statistic in STATISTICS:
        assert found[statistic] == pytest.approx(expected[statistic], rel=1e-5, abs=1e-7)


# --- features on signals with known answers ---------------------------------------------


@quiet_tuning
@pytest.mark.parametrize("sr", [22_050, 44_100])
def test_a_sines_crossings_and_its_centroid_on_librosas_default_axis(sr):
    f = extract_features(signal=_sine(freq=4000, sr=sr), sr=sr)
    # A sine crosses zero twice per period: 2 * 4000 / sr crossings per sample.
    assert _stat(f, "zcr", "mean")[0] == pytest.approx(2 * 4000 / sr, rel=0.01)
    # FMA never passed sr to the STFT features: at 44.1 kHz, bin frequencies are
    # read at 22,050 Hz, so the 4 kHz tone's centroid shows at 2 kHz.
    assert _stat(f, "spectral_centroid", "median")[0] == pytest.approx(4000 * SR / sr, rel=0.01)


@quiet_tuning
@pytest.mark.parametrize("sr", [22_050, 44_100])
def test_an_a440_sine_peaks_on_pitch_class_a_in_every_chroma(sr):
    """Chroma rows run C, C#, ..., B: A is row 9. (Reading FMA's 12-per-octave CQT
    with librosa 0.11's default of 36 bins per octave would put it on D#.)"""
    f = extract_features(signal=_sine(freq=440, sr=sr), sr=sr)
    for feature in ("chroma_cqt", "chroma_cens", "chroma_stft"):
        assert int(np.argmax(_stat(f, feature, "mean"))) == 9, feature


@quiet_tuning
def test_rmse_has_fmas_scale_for_white_noise():
    """FMA's librosa defined rmse(S) as sqrt(mean_k |S_k|^2). For white noise of
    standard deviation s and a 2048-point Hann window, E|S_k|^2 = s^2 * sum(w^2)
    = s^2 * 768, so rmse = s * sqrt(768) (today's librosa.feature.rms would give
    about s * 0.61, a different scale from FMA's column)."""
    noise = np.random.default_rng(0).normal(0, 0.1, 5 * SR).astype(np.float32)
    f = extract_features(signal=noise, sr=SR)
    assert _stat(f, "rmse", "mean")[0] == pytest.approx(0.1 * np.sqrt(768), rel=0.02)


@quiet_tuning
def test_constant_series_get_skew_0_and_kurtosis_minus_3():
    f = extract_features(signal=np.zeros(3 * SR, dtype=np.float32), sr=SR)
    assert np.isfinite(f).all()
    for feature in FEATURE_SIZES:  # digital silence: every series is flat
        assert (_stat(f, feature, "skew") == CONSTANT_SKEW).all(), feature
        assert (_stat(f, feature, "kurtosis") == CONSTANT_KURTOSIS).all(), feature
        assert (_stat(f, feature, "std") == 0).all(), feature
    assert (CONSTANT_SKEW, CONSTANT_KURTOSIS) == (0.0, -3.0)


def test_a_signal_shorter_than_one_frame_is_refused():
    with pytest.raises(ValueError, match="too short"):
        extract_features(signal=np.zeros(2047, dtype=np.float32), sr=SR)


def test_a_stereo_array_or_a_too_low_sample_rate_is_refused():
    with pytest.raises(ValueError, match="mono"):
        extract_features(signal=np.zeros((2, SR), dtype=np.float32), sr=SR)
    with pytest.raises(ValueError, match="too low"):
        extract_features(signal=_sine(freq=440, sr=8000, seconds=2), sr=8000)


# --- decoding ----------------------------------------------------------------------------


def test_a_float_wav_of_the_decoded_ogg_gives_the_same_features(analysed, audio_dir, tmp_path):
    """The WAV holds the very float32 samples the OGG decodes to, so only the
    container differs: any difference beyond float rounding (1e-6) would be a bug."""
    signal, sr = decode(audio_dir / TAGGED_CLIP, excerpt_seconds=None)
    wav = tmp_path / "clip.wav"
    sf.write(wav, signal, sr, subtype="FLOAT")
    np.testing.assert_allclose(
        features_from_file(wav), analysed[TAGGED_CLIP][2], rtol=1e-6, atol=1e-6
    )


def test_a_16_bit_wav_keeps_the_energy_features(analysed, audio_dir, tmp_path):
    """16-bit rounding adds noise about 96 dB below full scale: the loudness,
    cepstrum and centroid of the music move by far less than 0.1 % (rmse, centroid)
    or 0.05 (mfcc means, whose scale is tens), while statistics of near-silent
    frames (chroma and contrast minima, skews) follow the new noise floor and
    are not compared."""
    signal, sr = decode(audio_dir / TAGGED_CLIP, excerpt_seconds=None)
    wav = tmp_path / "clip16.wav"
    sf.write(wav, signal, sr, subtype="PCM_16")
    ogg, wav16 = analysed[TAGGED_CLIP][2], features_from_file(wav)
    for statistic in ("mean", "median", "max"):
        assert _stat(wav16, "rmse", statistic) == pytest.approx(
            _stat(ogg, "rmse", statistic), rel=1e-3
        )
    np.testing.assert_allclose(_stat(wav16, "mfcc", "mean"), _stat(ogg, "mfcc", "mean"), atol=0.05)
    centroid = _stat(ogg, "spectral_centroid", "median")
    assert _stat(wav16, "spectral_centroid", "median") == pytest.approx(centroid, rel=1e-3)


def test_the_excerpt_is_the_middle_30_seconds(audio_dir, analysed):
    path = audio_dir / LONG_CLIP
    whole, sr = decode(path, excerpt_seconds=None)
    assert len(whole) == sf.info(str(path)).frames
    excerpt = analysed[LONG_CLIP][0]
    assert len(excerpt) == 30 * sr
    start = (len(whole) - 30 * sr) // 2
    np.testing.assert_array_equal(excerpt, whole[start : start + 30 * sr])


def test_a_clip_shorter_than_the_excerpt_is_returned_whole(audio_dir, analysed):
    assert len(analysed[SHORT_CLIP][0]) == sf.info(str(audio_dir / SHORT_CLIP)).frames


def test_bytes_and_file_objects_decode_like_the_path(audio_dir):
    path = audio_dir / SHORT_CLIP
    expected, sr = decode(path)
    data = path.read_bytes()
    for source in (data, io.BytesIO(data)):
        signal, rate = decode(source)
        assert rate == sr
        np.testing.assert_array_equal(signal, expected)


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _sine(freq=440, sr=SR, seconds=1), _sine(freq=660, sr=SR, seconds=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    signal, _ = decode(path)
    np.testing.assert_allclose(signal, (left + right) / 2, atol=1e-7)


def test_a_flac_written_from_a_clip_decodes_to_the_same_samples(audio_dir, tmp_path):
    signal, sr = decode(audio_dir / TAGGED_CLIP, excerpt_seconds=10)
    flac = tmp_path / "clip.flac"
    sf.write(flac, signal, sr)  # 16-bit FLAC: lossless up to one 16-bit step
    decoded, rate = decode(flac, excerpt_seconds=None)
    assert rate == sr
    np.testing.assert_allclose(decoded, signal, atol=1 / 2**15)


def test_an_mp3_written_from_a_clip_decodes_and_seeks(audio_dir, tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    signal, sr = decode(audio_dir / TAGGED_CLIP, excerpt_seconds=10)
    mp3 = tmp_path / "clip.mp3"
    sf.write(mp3, signal, sr, format="MP3")
    whole, rate = decode(mp3, excerpt_seconds=None)
    assert rate == sr
    assert abs(len(whole) - len(signal)) <= 2 * 1152  # at most two MP3 frames of padding
    n = min(len(whole), len(signal))
    assert np.corrcoef(whole[:n], signal[:n])[0, 1] > 0.99  # lossy, but the same music
    # The excerpt is read by seeking into the MP3: it must be the middle of the whole.
    excerpt, _ = decode(mp3, excerpt_seconds=4)
    start = (len(whole) - 4 * sr) // 2
    np.testing.assert_allclose(excerpt, whole[start : start + 4 * sr], atol=1e-5)


def test_undecodable_files_raise_audio_error_naming_the_file(audio_dir, tmp_path):
    empty = tmp_path / "empty.ogg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.ogg"
    truncated.write_bytes((audio_dir / TAGGED_CLIP).read_bytes()[:1024])
    text = tmp_path / "notes.ogg"
    text.write_text("this is a text file, not audio\n" * 20)
    for path, reason in ((empty, "empty"), (truncated, "truncated"), (text, "not a recognised")):
        with pytest.raises(AudioError, match=reason) as caught:
            decode(path)
        assert str(path) in str(caught.value)
        assert isinstance(caught.value, ValueError)
    with pytest.raises(AudioError, match="empty"):
        decode(b"")


# --- the extraction job ------------------------------------------------------------------


def test_extraction_writes_an_fma_folder_and_skips_the_broken_file(audio_dir, analysed, tmp_path):
    broken = tmp_path / "broken.ogg"
    broken.write_text("not audio")
    clips = [audio_dir / TAGGED_CLIP, audio_dir / NAMED_CLIP, audio_dir / ARTIST_ONLY_CLIP]
    seen = []
    out = tmp_path / "out"
    report = extract_catalogue(
        paths=[clips[0], broken, *clips[1:]],
        out_dir=out,
        jobs=2,
        excerpt_seconds=30.0,
        on_file=lambda path, reason: seen.append(path),
    )
    assert report.written == 3
    assert [path for path, _ in report.skipped] == [broken]
    assert "not a recognised audio format" in report.skipped[0][1]
    assert sorted(seen) == sorted([*clips, broken])

    cat = load_catalogue(data_dir=out, cache_dir=tmp_path / "cache")
    assert cat.track_ids.tolist() == [1, 2, 3]
    expected = np.stack([analysed[p.name][2] for p in clips])
    # Dask's workers run BLAS on one thread, which sums in another order than this
    # process does: the last bits may differ (%.10e itself round-trips float32).
    np.testing.assert_allclose(cat.features, expected, rtol=1e-4, atol=1e-6)
    tracks = pd.read_csv(out / "tracks.csv", index_col=0, header=[0, 1])
    assert tracks[("track", "title")].tolist() == [
        "Vibe Ace",  # the tag
        "Choice - Drum-bass",  # "artist_-_title" file name
        ARTIST_ONLY_CLIP.removesuffix(".ogg"),  # no title tag, no separator: the stem
    ]
    assert tracks[("artist", "name")].tolist() == ["Kevin MacLeod", "admiralbob77", "Lena Orsa"]
    assert tracks[("artist", "id")].tolist() == [1, 2, 3]
    assert tracks[("track", "genre_top")].isna().all()
    durations = [sf.info(str(p)).duration for p in clips]
    np.testing.assert_allclose(tracks[("track", "duration")], durations, atol=1e-3)
    features = pd.read_csv(out / "features.csv", index_col=0, header=[0, 1, 2])
    assert list(features.columns) == list(FEATURE_COLUMNS)
    assert features.columns.names == ["feature", "statistics", "number"]


def test_folders_are_searched_and_names_come_from_tags_or_file_names(tmp_path):
    music = tmp_path / "music"
    (music / "b").mkdir(parents=True)
    (music / "a").mkdir()
    noise = np.random.default_rng(1).normal(0, 0.1, 2 * SR).astype(np.float32)
    sf.write(music / "b" / "The Band - First Song.wav", noise, SR)
    sf.write(music / "a" / "take 3.flac", noise, SR)
    sf.write(music / "a" / "tagged.flac", noise, SR)
    tagged = mutagen.File(music / "a" / "tagged.flac")
    tagged["title"], tagged["artist"] = "Tagged Title", "The Band"
    tagged.save()
    (music / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    (music / "a" / "._tagged.flac").write_bytes(b"\x00" * 100)  # macOS resource fork

    report = extract_catalogue(
        paths=[music], out_dir=tmp_path / "out", jobs=1, excerpt_seconds=None, on_file=None
    )
    assert (report.written, report.skipped) == (3, [])
    tracks = pd.read_csv(tmp_path / "out" / "tracks.csv", index_col=0, header=[0, 1])
    # a/ before b/, files sorted by name within each folder ("tagged" < "take 3")
    assert tracks[("track", "title")].tolist() == ["Tagged Title", "take 3", "First Song"]
    # the untagged file gets no name and an artist of its own, never a shared "unknown"
    names = tracks[("artist", "name")]
    assert names.iloc[[0, 2]].tolist() == ["The Band", "The Band"] and names.isna().iloc[1]
    assert tracks[("artist", "id")].tolist() == [1, 2, 1]
    assert tracks[("track", "file")].tolist() == [
        "a/tagged.flac",
        "a/take 3.flac",
        "b/The Band - First Song.wav",
    ]
    assert json.loads((tmp_path / "out" / "library.json").read_text()) == {
        "root": str(music.resolve())
    }
    sha = hashlib.sha256((music / "a" / "take 3.flac").read_bytes()).hexdigest()
    assert tracks[("track", "fingerprint")].iloc[1] == sha


def test_two_untagged_files_are_two_artists(tmp_path):
    noise = np.random.default_rng(2).normal(0, 0.1, 2 * SR).astype(np.float32)
    for name in ("one.wav", "two.wav"):
        sf.write(tmp_path / name, noise, SR)
    extract_catalogue(paths=[tmp_path], out_dir=tmp_path / "out", jobs=1, excerpt_seconds=None)
    tracks = pd.read_csv(tmp_path / "out" / "tracks.csv", index_col=0, header=[0, 1])
    assert tracks[("artist", "id")].nunique() == 2


def test_a_missing_path_stops_the_job_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract_catalogue(
            paths=[tmp_path / "nope"],
            out_dir=tmp_path / "out",
            jobs=1,
            excerpt_seconds=30.0,
            on_file=None,
        )
    assert not (tmp_path / "out").exists()


def test_extreme_sample_values_raise_a_value_error_not_a_crash():
    from training.audio.recipe import extract_features

    loud = np.random.default_rng(0).normal(scale=1e18, size=22_050 * 3)
    with pytest.raises(ValueError, match="cannot analyse this signal"):
        extract_features(signal=loud, sr=22_050)


def wav_claiming(*, rate: int, seconds: float = 1.0, channels: int = 1) -> bytes:
    """A real 22.05 kHz PCM WAV written by soundfile, its `fmt ` chunk's rate patched."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((int(SR * seconds), channels), np.float32), SR, format="WAV")
    data = bytearray(buffer.getvalue())
    fmt = data.index(b"fmt ")
    # fmt chunk: id, size, format tag (2), channels (2), then the sample rate (4)
    data[fmt + 12 : fmt + 16] = int(rate).to_bytes(4, "little")
    return bytes(data)


@pytest.fixture
def decoding_forbidden(monkeypatch):
    """Any read of samples fails the test: the refusal must come from the header alone."""

    def no_reading(*args, **kwargs):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_reading)


@pytest.mark.parametrize(
    ("rate", "claimed"), [(2_000_000_000, "2000000000 Hz"), (4_000, "4000 Hz")]
)
def test_a_wav_claiming_an_absurd_sample_rate_is_refused_from_its_header(
    decoding_forbidden, rate, claimed
):
    with pytest.raises(AudioError, match=f"sample rate of {claimed}"):
        decode(wav_claiming(rate=rate))


def test_too_many_channels_are_refused_from_the_header(decoding_forbidden):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((2048, 16), np.float32), SR, format="WAV")
    with pytest.raises(AudioError, match="16 channels"):
        decode(buffer.getvalue())


def test_a_whole_file_longer_than_the_decoded_sample_bound_is_refused(
    decoding_forbidden, monkeypatch
):
    import training.audio.recipe as recipe

    monkeypatch.setattr(recipe, "MAX_DECODED_SAMPLES", SR // 2)
    wav = wav_claiming(rate=SR, seconds=1.0)
    with pytest.raises(AudioError, match=f"at most {SR // 2} are decoded"):
        decode(wav, excerpt_seconds=None)
    with pytest.raises(AudioError, match="at most"):
        decode(wav, excerpt_seconds=0.75)  # 0.75 s of 22 050 Hz is above the bound too


def test_a_header_within_the_bounds_still_decodes(monkeypatch):
    signal, sr = decode(wav_claiming(rate=48_000), excerpt_seconds=None)
    assert sr == 48_000 and signal.shape == (SR,)
