"""2-D maps of an embedding space, shared by the run reports and the service's explorer.

>>> xy = principal_plane(embeddings)   # (n, d) -> (n, 2)
"""

from __future__ import annotations

import numpy as np


def principal_plane(embeddings: np.ndarray) -> np.ndarray:
    """(n, 2) projection of (n, d) points onto their two principal axes.

    The axes are the top eigenvectors of the (d, d) covariance: far cheaper than an
    SVD of the (n, d) points when n is in the thousands. The sign of each axis is
    fixed (its largest loading positive), so the picture does not flip between runs.
    """
    centred = np.asarray(embeddings, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    if len(centred) < 2:
        return np.zeros((len(centred), 2))
    values, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, np.argsort(values)[::-1][:2]].T
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    projected = centred @ (axes * signs[:, None]).T
    if projected.shape[1] < 2:  # one feature dimension: a line, drawn flat
        projected = np.column_stack([projected, np.zeros(len(projected))])
    return projected
