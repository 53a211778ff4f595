"""Which FAISS index holds the embeddings: exact `flat`, or approximate HNSW / IVF / IVF-PQ.

`flat` is exact and the default. The approximate kinds trade a little recall for
speed (HNSW, IVF) or memory (IVF-PQ, whose codes are re-ranked exactly, see
`SongIndex`). Their parameters follow FAISS's own guidance: an IVF with about
sqrt(n) lists, trained on up to 64 vectors per list, and PQ codes of one byte per
8 dimensions.

    >>> spec = IndexSpec(kind="hnsw")
    >>> index = build_faiss_index(spec, embeddings)       # trained (if needed) and filled
    >>> index.search(queries, k, params=search_parameters(spec, index, k, selector=None))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import faiss
import numpy as np

from app.index.exact import STORES, FileRows, Store

IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]
INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivfpq")
PQ_DIMS_PER_BYTE = 8  # one 8-bit sub-quantiser code per 8 dimensions
PQ_MIN_TRAINING = 10_000  # below this, PQ codebooks are noise: IVF-PQ degrades to IVF
MAX_COALESCE_WAIT_MS = 5.0  # beyond this a lone query would pay too much
TRAINING_VECTORS_PER_LIST = 64  # FAISS warns below 39; more buys nothing measurable
PCA_TRAINING = 30_000  # rows the HNSW graph's principal components are fitted on


@dataclass(frozen=True)
class IndexSpec:
    """The index kind and its parameters (all but `kind` matter only to some kinds)."""

    kind: IndexKind = "flat"
    hnsw_m: int = 32  # graph degree: memory and recall grow with it
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64  # candidate list per query: recall vs latency (BENCHMARKS)
    # The graph is built on the principal components holding this share of the
    # embeddings' variance (1 = the full vectors); its hnsw_refine x k candidates are then
    # re-ranked with exact distances over the full vectors.
    hnsw_variance: float = 0.99
    hnsw_refine: int = 2
    ivf_nlist: int = 0  # inverted lists; 0 picks about sqrt(n) at build time
    ivf_nprobe: int = 32  # lists visited per query: recall vs latency
    pq_refine: int = 10  # IVF-PQ: re-rank k * pq_refine candidates with exact distances
    exact_below: int = 20_000  # a filter passing fewer songs is searched exactly
    # flat only: the copy scanned per query, float32 (the vectors), float16 or sq8 codes
    # whose best store_refine x k rows are re-ranked with the float32 vectors
    store: Store = "float32"
    store_refine: int = 4
    coalesce_wait_ms: float = 0.5  # flat: longest wait for concurrent queries; 0 = off

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}: {self.kind!r}")
        for name in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.hnsw_variance <= 1 or self.hnsw_refine < 1:
            raise ValueError("hnsw_variance must be in (0, 1], hnsw_refine >= 1")
        if self.ivf_nlist < 0 or self.pq_refine < 1 or self.exact_below < 0:
            raise ValueError("ivf_nlist and exact_below must be >= 0, pq_refine >= 1")
        if self.store not in STORES or self.store_refine < 1:
            raise ValueError(f"store must be one of {', '.join(STORES)}, store_refine >= 1")
        if not 0 <= self.coalesce_wait_ms <= MAX_COALESCE_WAIT_MS:
            raise ValueError(f"coalesce_wait_ms must be in [0, {MAX_COALESCE_WAIT_MS}]")

    @property
    def approximate(self) -> bool:
        return self.kind != "flat"

    def as_dict(self) -> dict:
        return asdict(self)


def nlist_for(spec: IndexSpec, n: int) -> int:
    """The number of inverted lists for n vectors (never more than n)."""
    wanted = spec.ivf_nlist or int(round(math.sqrt(max(n, 1))))
    return max(1, min(wanted, n))


def padded_dim(dim: int) -> int:
    """PQ needs a dimension divisible by its sub-quantiser count: pad with zeros.

    Zero columns change no L2 distance, so padding is exact.
    """
    return math.ceil(dim / PQ_DIMS_PER_BYTE) * PQ_DIMS_PER_BYTE


def effective_kind(spec: IndexSpec, n: int) -> IndexKind:
    """The kind actually built for n vectors: training-based kinds need enough data."""
    if spec.kind == "ivfpq" and n < PQ_MIN_TRAINING:
        return "ivf" if n > 0 else "flat"
    if spec.kind == "ivf" and n == 0:
        return "flat"
    return spec.kind


def build_faiss_index(
    spec: IndexSpec, vectors: np.ndarray | FileRows, *, seed: int = 0
) -> faiss.Index:
    """An index of `spec`'s kind (see `effective_kind`) trained on and filled with `vectors`
    (an array, or a store's rows read from its file)."""
    n, dim = vectors.shape
    kind = effective_kind(spec, n)
    if kind == "flat":
        index = faiss.IndexFlatL2(dim)
    elif kind == "hnsw":
        index = _hnsw(spec, vectors, seed=seed)
    else:
        index = _trained_ivf(spec, kind, vectors, seed=seed)
    add_vectors(index, vectors)
    return index


def _hnsw(spec: IndexSpec, vectors: np.ndarray | FileRows, *, seed: int) -> faiss.Index:
    """An HNSW graph, over the leading principal components when they hold
    spec.hnsw_variance of the variance in at most half the dimensions.

    Each graph step computes distances to tens of neighbours, so its cost is
    proportional to their dimension: a learned embedding whose variance lies in few
    directions is searched several times faster this way (BENCHMARKS), and the exact
    re-ranking of the candidates restores the full vectors' distances.
    """
    dim = vectors.shape[1]
    sample = _sample(vectors, PCA_TRAINING, seed=seed)
    components = principal_components(sample, spec.hnsw_variance)
    graph = faiss.IndexHNSWFlat(components or dim, spec.hnsw_m)
    graph.hnsw.efConstruction = spec.hnsw_ef_construction
    if components is None:
        return graph
    pca = faiss.PCAMatrix(dim, components)
    pca.train(sample)
    return faiss.IndexPreTransform(pca, graph)


def principal_components(sample: np.ndarray, variance: float) -> int | None:
    """How many principal components of `sample` hold `variance` of its variance; None
    when the full vectors are wanted (variance 1), the sample is too small to tell, or
    the components are more than half the dimensions (too little to gain)."""
    n, dim = sample.shape
    if variance >= 1 or n < 2 * dim:
        return None
    centred = sample.astype(np.float64) - sample.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred)[::-1]
    share = np.cumsum(eigenvalues) / max(eigenvalues.sum(), np.finfo(np.float64).tiny)
    components = int(np.searchsorted(share, variance) + 1)
    return components if components <= dim // 2 else None


def _sample(vectors: np.ndarray | FileRows, most: int, *, seed: int) -> np.ndarray:
    """At most `most` rows drawn without replacement (all when fewer), in row order."""
    n = len(vectors)
    if n <= most:
        return np.asarray(vectors[np.arange(n)], dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))
    return np.asarray(vectors[rows], dtype=np.float32)


def _trained_ivf(spec: IndexSpec, kind: IndexKind, vectors: np.ndarray | FileRows, *, seed: int):
    n, dim = vectors.shape
    nlist = nlist_for(spec, n)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
    else:
        dim = padded_dim(dim)
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, dim // PQ_DIMS_PER_BYTE, 8)
    n_train = min(n, max(nlist * TRAINING_VECTORS_PER_LIST, PQ_MIN_TRAINING))
    index.train(prepare(index, _sample(vectors, n_train, seed=seed)))
    return index


def prepare(index: faiss.Index, vectors: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, zero-padded to the index's dimension."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    missing = index.d - vectors.shape[1]
    if missing:
        vectors = np.pad(vectors, ((0, 0), (0, missing)))
    return vectors


def add_vectors(index: faiss.Index, vectors: np.ndarray | FileRows, *, chunk: int = 65_536) -> None:
    """Add in chunks so that a memory-mapped array is never copied whole."""
    for start in range(0, len(vectors), chunk):
        index.add(prepare(index, vectors[start : start + chunk]))


def kind_of(index: faiss.Index) -> IndexKind:
    if isinstance(index, faiss.IndexPreTransform):  # only `_hnsw` builds one: no downcast
        return "hnsw"
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    return "flat"


def search_parameters(
    spec: IndexSpec, index: faiss.Index, k: int, selector: faiss.IDSelector | None
) -> faiss.SearchParameters | None:
    """Per-query parameters: the selector (filters) and the kind's recall knob."""
    kind = kind_of(index)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(spec.hnsw_ef_search, k))
    if kind in ("ivf", "ivfpq"):
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(spec.ivf_nprobe, index.nlist))
    return None if selector is None else faiss.SearchParameters(sel=selector)


def candidates_for(index: faiss.Index, k: int, spec: IndexSpec) -> int:
    """How many candidates to fetch for k answers: IVF-PQ's, and those of a graph over
    principal components, are re-ranked exactly."""
    if kind_of(index) == "ivfpq":
        return k * spec.pq_refine
    if isinstance(index, faiss.IndexPreTransform):
        return k * spec.hnsw_refine
    return k
