"""The scorings' top k straight from their definitions, over a whole catalogue (numpy + scipy)."""

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import norm

from app.index.protocol import SongFilter, haversine_km


def reference_top(rows, vectors, query, *, name, k, allowed, own=None, k_radius=10):
    """Ids of the k best songs by the definitions, over the whole catalogue (numpy + scipy)."""
    v = vectors.astype(np.float64)
    d_all = cdist(v, v)
    np.fill_diagonal(d_all, np.inf)
    radius = np.sort(d_all, axis=1)[:, :k_radius].mean(1)
    finite = np.where(np.isfinite(d_all), d_all, np.nan)
    mu, sd = np.nanmean(finite, axis=1), np.nanstd(finite, axis=1)
    d = cdist(query[None].astype(np.float64), v)[0]
    if own is not None:  # a stored song: its own statistics
        r_q, mu_q, sd_q = radius[own], mu[own], sd[own]
    else:  # cold start: its neighbourhood in the catalogue
        r_q, mu_q, sd_q = np.sort(d)[:k_radius].mean(), d.mean(), d.std()
    if name == "l2":
        s = d
    elif name == "local-scaling":
        s = d / np.sqrt(r_q * radius)
    else:
        s = 1 - norm.sf(d, mu_q, sd_q) * norm.sf(d, mu, sd)
    s = np.where(allowed, s, np.inf)
    order = np.lexsort((rows.ids, d, s))
    return [int(rows.ids[i]) for i in order[:k] if allowed[i]]


def allowed_by(rows, where: SongFilter, exclude_row=None) -> np.ndarray:
    ok = np.ones(len(rows), dtype=bool)
    if exclude_row is not None:
        ok[exclude_row] = False
    if where.exclude_artist is not None:
        ok &= rows.artist_ids != where.exclude_artist
    if where.genre is not None:
        ok &= rows.genres == where.genre
    if where.near is not None:
        km = haversine_km(
            where.near.latitude, where.near.longitude, rows.latitudes, rows.longitudes
        )
        ok &= km <= where.near.radius_km
    return ok
