"""Frame-level simulation of the 74 librosa series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from training.data.features import FEATURE_COLUMNS, FEATURE_SIZES, STATISTICS
from training.data.synthetic.layout import _Layout
from training.data.synthetic.style import (
    _N_DESCRIPTORS,
    _NUISANCES,
    _PHYSICS_SEED,
    _SOUND_DIM,
    _Style,
)

# Share of tracks (rounded up) with one series of missing statistics, as in FMA.
_MISSING_SHARE = 0.001


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
