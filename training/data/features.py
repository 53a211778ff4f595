"""The 518 FMA audio features: names and order, shared by every part of musicsim.

FMA's `features.csv` holds 74 frame-wise librosa series, each summarised by 7
statistics over time, in columns sorted by (feature, statistics, number):

    >>> from training.data.features import FEATURE_COLUMNS, N_FEATURES
    >>> N_FEATURES, FEATURE_COLUMNS[0]
    (518, ('chroma_cens', 'kurtosis', '01'))
"""

from __future__ import annotations

# Series per feature, as in FMA's features.csv (the `number` level counts them).
FEATURE_SIZES: dict[str, int] = {
    "chroma_cens": 12,
    "chroma_cqt": 12,
    "chroma_stft": 12,
    "mfcc": 20,
    "rmse": 1,
    "spectral_bandwidth": 1,
    "spectral_centroid": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
    "tonnetz": 6,
    "zcr": 1,
}

STATISTICS: tuple[str, ...] = ("kurtosis", "max", "mean", "median", "min", "skew", "std")

# Names of the three header rows of features.csv, then of its index column.
HEADER_NAMES: tuple[str, str, str] = ("feature", "statistics", "number")
INDEX_NAME = "track_id"


def _columns() -> tuple[tuple[str, str, str], ...]:
    cols = [
        (feature, stat, f"{i + 1:02d}")
        for feature, size in FEATURE_SIZES.items()
        for stat in STATISTICS
        for i in range(size)
    ]
    return tuple(sorted(cols))


FEATURE_COLUMNS: tuple[tuple[str, str, str], ...] = _columns()
N_FEATURES = len(FEATURE_COLUMNS)
assert N_FEATURES == 518


def column_index(feature: str, statistic: str) -> list[int]:
    """Positions of one feature's columns for one statistic, in `number` order."""
    return [i for i, (f, s, _) in enumerate(FEATURE_COLUMNS) if f == feature and s == statistic]
