"""Audio -> the 518 FMA features, computed the way FMA computed its features.csv.

FMA's published recipe (its `features.py`, run with the librosa and scipy of 2017)
summarises 74 frame-wise librosa series by 7 statistics; docs/fma-format.md in
shared/ describes it. A cold-start song only sits among the catalogue's songs if
its numbers come from the same recipe, so this module follows it to the detail,
including where today's librosa changed a default since then (see `_series`).

    >>> from training.audio.recipe import decode, extract_features, features_from_file
    >>> signal, sr = decode("song.mp3")            # middle 30 s, mono, native rate
    >>> extract_features(signal=signal, sr=sr).shape
    (518,)
    >>> features_from_file("song.ogg", excerpt_seconds=None).dtype  # whole file
    dtype('float32')

`decode` also takes bytes or a binary file object (an upload). Files that cannot
be decoded raise `AudioError` (a ValueError) naming the file and the reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from training.data.features import FEATURE_COLUMNS
from training.extras import require

# The audio extra: this module is imported only where audio is analysed.
librosa = require("librosa", extra="audio")
sf = require("soundfile", extra="audio")

FRAME_LENGTH = 2048  # samples per analysis frame (STFT size, zcr frame)
HOP_LENGTH = 512  # samples between frames
EXCERPT_SECONDS = 30.0  # FMA's clips are 30 s from the middle of each track
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")

# FMA's STFT features never received the sample rate, so librosa's default
# defines their frequency axis whatever the file's true rate (fma-format.md).
_STFT_FEATURE_SR = 22_050
# A constant series has no skew or kurtosis. The scipy FMA ran (2017) returned 0
# and 0 - 3 = -3 for one (zero variance, moments taken as zero); today's returns
# NaN. Keeping the old values keeps flat series comparable with FMA's own rows.
CONSTANT_SKEW = 0.0
CONSTANT_KURTOSIS = -3.0

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class AudioError(ValueError):
    """Audio that cannot be decoded; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: cannot decode audio: {reason}")
        self.name = name
        self.reason = reason


# --- decoding -----------------------------------------------------------------------


def decode(
    source: Source, *, excerpt_seconds: float | None = EXCERPT_SECONDS
) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG/MP3 to (signal float32 (n,), sample rate), mono, native rate.

    Channels are averaged (as librosa.load(mono=True) does); nothing is resampled,
    as in FMA's recipe. By default only the middle `excerpt_seconds` are read
    (seeking, not decoding the rest); a shorter file is returned whole, and
    `excerpt_seconds=None` returns the whole file.
    """
    if excerpt_seconds is not None and not excerpt_seconds > 0:
        raise ValueError(f"excerpt_seconds must be positive or None, got {excerpt_seconds}")
    name = _source_name(source)
    stream = _open_source(source, name=name)
    try:
        with sf.SoundFile(stream) as f:
            sr = f.samplerate
            frames = _read_excerpt(f, excerpt_seconds=excerpt_seconds)
    except sf.LibsndfileError as exc:
        raise AudioError(name, _reason(exc)) from exc
    except sf.SoundFileError as exc:
        raise AudioError(name, str(exc)) from exc
    finally:
        if stream is not source and hasattr(stream, "close"):
            stream.close()
    if frames.shape[0] == 0:
        raise AudioError(name, "no audio samples (empty or truncated stream)")
    # Averaging in float32 matches librosa.to_mono on librosa.load's float32 samples.
    return np.ascontiguousarray(frames.mean(axis=1, dtype=np.float32)), int(sr)


def _source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str | os.PathLike) else "<upload>"


def _open_source(source: Source, *, name: str) -> str | BinaryIO:
    """A path or a seekable binary stream for soundfile; empty input fails here."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.stat().st_size == 0:  # a missing file raises FileNotFoundError here
            raise AudioError(name, "the file is empty")
        return str(path)
    if isinstance(source, bytes | bytearray | memoryview):
        stream: BinaryIO = io.BytesIO(bytes(source))
    elif source.seekable():
        stream = source
    else:
        # libsndfile needs to seek (headers at the end, the excerpt's start).
        stream = io.BytesIO(source.read())
    start = stream.tell()
    if not stream.read(1):
        raise AudioError(name, "the file is empty")
    stream.seek(start)
    return stream


def _read_excerpt(f: sf.SoundFile, *, excerpt_seconds: float | None) -> np.ndarray:
    """(frames, channels) float32: the middle excerpt, or everything."""
    if excerpt_seconds is None:
        return f.read(dtype="float32", always_2d=True)
    wanted = int(round(excerpt_seconds * f.samplerate))
    if f.seekable() and f.frames > 0:
        start = max(0, (f.frames - wanted) // 2)
        f.seek(start)
        return f.read(min(wanted, f.frames - start), dtype="float32", always_2d=True)
    data = f.read(dtype="float32", always_2d=True)  # length unknown: decode, then cut
    start = max(0, (data.shape[0] - wanted) // 2)
    return data[start : start + wanted]


def _reason(exc: sf.LibsndfileError) -> str:
    # libsndfile's codes (sndfile.h): 1 unrecognised format, 3 malformed, 4 encoding.
    reasons = {
        1: "not a recognised audio format (not audio, or an unsupported container)",
        3: "malformed or truncated audio data",
        4: "unsupported encoding",
    }
    return reasons.get(exc.code, exc.error_string.strip() or f"libsndfile error {exc.code}")


# --- features -------------------------------------------------------------------------


def extract_features(*, signal: np.ndarray, sr: int) -> np.ndarray:
    """FMA's 518 features of one mono signal: (n,) float at `sr` Hz -> (518,) float32.

    Values follow FEATURE_COLUMNS' order. A series that is constant over the clip
    (digital silence, a saturated chroma bin) has no defined skew or kurtosis;
    it gets skew CONSTANT_SKEW = 0 and kurtosis CONSTANT_KURTOSIS = -3, the values
    scipy gave when FMA computed its features (a zero-variance series treated as
    having zero third and fourth moments). Raises ValueError for a signal that is
    not 1-D, not finite, shorter than one frame (2048 samples), or at a sample rate
    too low for the 7-octave constant-Q transform (its top bin, B7 at 3.95 kHz,
    needs a rate above about 8.2 kHz; 8 kHz telephone audio is refused).
    """
    signal = _checked_signal(signal, sr=sr)
    try:
        series = _series(signal, sr=sr)
    except librosa.ParameterError as exc:  # e.g. samples so large that a transform overflows
        raise ValueError(f"cannot analyse this signal: {exc}") from exc
    summaries = {name: _summarise(values) for name, values in series.items()}
    out = np.empty(len(FEATURE_COLUMNS), dtype=np.float32)
    for i, (feature, statistic, number) in enumerate(FEATURE_COLUMNS):
        out[i] = summaries[feature][statistic][int(number) - 1]
    if not np.isfinite(out).all():
        raise ValueError("cannot analyse this signal: its features are not finite")
    return out


def features_from_file(
    source: Source, *, excerpt_seconds: float | None = EXCERPT_SECONDS
) -> np.ndarray:
    """decode + extract_features: (518,) float32 for one file, bytes or upload."""
    signal, sr = decode(source, excerpt_seconds=excerpt_seconds)
    return extract_features(signal=signal, sr=sr)


def _checked_signal(signal: np.ndarray, *, sr: int) -> np.ndarray:
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono signal of shape (n,), got shape {signal.shape}")
    if signal.shape[0] < FRAME_LENGTH:
        raise ValueError(
            f"signal too short: {signal.shape[0]} samples, at least one frame "
            f"({FRAME_LENGTH} samples) is needed"
        )
    if not np.issubdtype(signal.dtype, np.floating):
        raise ValueError(f"expected a float signal in [-1, 1], got dtype {signal.dtype}")
    if not np.isfinite(signal).all():
        raise ValueError("signal holds NaN or infinite samples")
    if not (isinstance(sr, int | np.integer) and sr > 0):
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    # librosa.load gives float32; the same precision gives FMA's numbers.
    return np.ascontiguousarray(signal, dtype=np.float32)


def _series(signal: np.ndarray, *, sr: int) -> dict[str, np.ndarray]:
    """The 11 frame-wise features: name -> (n_series, n_frames), FMA's recipe.

    Where librosa 0.11 differs from the librosa FMA used (0.5/0.6), the old
    behaviour is asked for explicitly:
    - STFT and CQT pad the signal's ends by reflection (the default is now zeros);
    - chroma_cqt/chroma_cens read the 84-bin CQT as 12 bins per octave (their
      default is now 36, which would misread FMA's 12-per-octave CQT);
    - rmse is sqrt(mean over frequency bins of |S|^2), what librosa's `rmse(S=)`
      returned then; today's `rms(S=)` rescales by the window (Parseval) and would
      give values about 45 times smaller than FMA's column.
    """
    zcr = librosa.feature.zero_crossing_rate(
        signal, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH
    )
    try:
        cqt = np.abs(
            librosa.cqt(
                signal,
                sr=sr,
                hop_length=HOP_LENGTH,
                bins_per_octave=12,
                n_bins=7 * 12,
                tuning=None,  # estimated from the signal, as FMA did
                pad_mode="reflect",
            )
        )
    except librosa.ParameterError as exc:
        raise ValueError(f"sample rate {sr} Hz is too low for FMA's features: {exc}") from exc
    chroma_cqt = librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    chroma_cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7, bins_per_octave=12)
    del cqt
    stft = np.abs(
        librosa.stft(signal, n_fft=FRAME_LENGTH, hop_length=HOP_LENGTH, pad_mode="reflect")
    )
    power = stft**2
    sr_stft = _STFT_FEATURE_SR
    mel = librosa.feature.melspectrogram(sr=sr, S=power)  # the mel axis gets the true rate
    return {
        "zcr": zcr,
        "chroma_cqt": chroma_cqt,
        "chroma_cens": chroma_cens,
        "tonnetz": librosa.feature.tonnetz(chroma=chroma_cens),
        "chroma_stft": librosa.feature.chroma_stft(S=power, sr=sr_stft, n_chroma=12),
        "rmse": np.sqrt(np.mean(power, axis=0, keepdims=True)),
        "spectral_centroid": librosa.feature.spectral_centroid(S=stft, sr=sr_stft),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=stft, sr=sr_stft),
        "spectral_contrast": librosa.feature.spectral_contrast(S=stft, sr=sr_stft, n_bands=6),
        "spectral_rolloff": librosa.feature.spectral_rolloff(S=stft, sr=sr_stft),
        "mfcc": librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20),
    }


def _summarise(values: np.ndarray) -> dict[str, np.ndarray]:
    """7 statistics over frames of (n_series, n_frames) -> statistic -> (n_series,)."""
    x = values.astype(np.float64)  # moments in double, stored as float32 at the end
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    m2, m3, m4 = ((centred**k).mean(axis=1) for k in (2, 3, 4))
    # scipy.stats.skew and .kurtosis (bias=True, Fisher) written out, so that a
    # constant series (m2 == 0) gets the stated convention without scipy's NaN
    # and its warning (silencing warnings is process-wide, not thread-safe).
    flat = m2 == 0
    safe_m2 = np.where(flat, 1.0, m2)
    return {
        "kurtosis": np.where(flat, CONSTANT_KURTOSIS, m4 / safe_m2**2 - 3.0),
        "max": x.max(axis=1),
        "mean": mean,
        "median": np.median(x, axis=1),
        "min": x.min(axis=1),
        "skew": np.where(flat, CONSTANT_SKEW, m3 / safe_m2**1.5),
        "std": np.sqrt(m2),
    }
