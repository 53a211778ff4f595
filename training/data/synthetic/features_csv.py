"""features.csv: pandas' to_csv(float_format="%.10e") is too slow for millions of cells
(about 13 s for the default catalogue), so the rows are formatted with numpy into the
very same bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.features import FEATURE_COLUMNS, HEADER_NAMES, INDEX_NAME

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
