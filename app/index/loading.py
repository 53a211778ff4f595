"""Start-up: the one place that chooses the index backend and fills it from the database.

    >>> index = open_index(session, settings, bundle)     # filled with every stored song
    >>> index.close()

Both backends implement `app.index.protocol.SongIndex`, so the follower and the
routes hold no backend-specific code. FAISS indexes are built from the whole catalogue at once
(IVF kinds train on it) and persist their embeddings; a Milvus collection
persists itself and is brought up to date with the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from app.catalogue.reads import (
    catalogue_version,
    read_features_of,
    read_song_ids,
    read_song_rows,
)
from app.config import Settings
from app.index.cache import CacheKey, EmbeddingCache, RowsFile, spec_digest, spot_check
from app.index.faiss_index import FaissSongIndex
from app.index.follower import index_missing_songs
from app.index.kinds import IndexSpec
from app.index.scored import ScoredIndex
from training.artefacts import Bundle
from training.evaluation.scoring import Scoring

log = logging.getLogger("musicsim.index")
# Songs read and embedded per step: bounded memory at any size.
EMBED_CHUNK = 20_000


def open_index(session: Session, settings: Settings, bundle: Bundle) -> ScoredIndex:
    """The configured index, holding every song stored in the database, searched by scoring.

    The service's own scoring, when not l2, has its neighbourhoods computed before this
    returns; an l2 service's are computed in the background from now on when
    MUSICSIM_SCORING_WARMUP is on, else from the first request for another scoring.
    """
    dim = bundle.embedding_dim
    scoring = service_scoring(settings, bundle)
    if settings.index_backend == "faiss":
        cache = EmbeddingCache(settings.index_cache_dir) if settings.index_cache_dir else None
        scored = build_index(
            session,
            bundle.embed,
            dim,
            spec=index_spec(settings),
            cache=cache,
            model_sha256=bundle.manifest_sha256,
            scoring=scoring,
        )
    else:
        index = open_milvus_collection(settings, dim=dim, model_sha256=bundle.manifest_sha256)
        # The collection outlives restarts: drop songs deleted while this process was away.
        stale = np.setdiff1d(index.stored_ids(), read_song_ids(session))
        index.remove(stale)
        index_missing_songs(session, index, bundle.embed)
        scored = ScoredIndex.build(index, scoring=scoring)
    if settings.scoring_warmup:
        scored.start_neighbourhoods()  # returns at once when they are computed already
    return scored


def service_scoring(settings: Settings, bundle: Bundle) -> Scoring:
    """MUSICSIM_SCORING and MUSICSIM_SCORING_K where set, else the scoring the bundle records."""
    chosen = bundle.scoring
    return Scoring(
        settings.scoring or chosen.name,
        k=settings.scoring_k or chosen.k,
        pool=settings.scoring_pool,
        sample=chosen.sample,
    )


def open_milvus_collection(settings: Settings, *, dim: int, model_sha256: str):
    """The Milvus collection of this model (created when absent).

    The collection's name carries the model's manifest hash: embeddings of another
    model are never mixed with this one's, and a new model starts its own collection.
    """
    # Imported here: pymilvus is loaded only by services that use Milvus.
    from app.index.milvus import MilvusSongIndex

    if "://" not in settings.milvus_uri:  # Milvus Lite: a file, whose folder must exist
        Path(settings.milvus_uri).parent.mkdir(parents=True, exist_ok=True)
    return MilvusSongIndex(
        dim,
        uri=settings.milvus_uri,
        token=settings.milvus_token,
        collection=f"{settings.milvus_collection}_{model_sha256[:16]}",
    )


def index_spec(settings: Settings) -> IndexSpec:
    return IndexSpec(
        kind=settings.index_kind,
        hnsw_m=settings.index_hnsw_m,
        hnsw_ef_construction=settings.index_hnsw_ef_construction,
        hnsw_ef_search=settings.index_hnsw_ef_search,
        hnsw_variance=settings.index_hnsw_variance,
        hnsw_refine=settings.index_hnsw_refine,
        ivf_nlist=settings.index_ivf_nlist,
        ivf_nprobe=settings.index_ivf_nprobe,
        pq_refine=settings.index_pq_refine,
        exact_below=settings.index_exact_below,
        store=settings.index_store,
        store_refine=settings.index_store_refine,
        coalesce_wait_ms=settings.coalesce_wait_ms,
    )


def embed_songs(
    session: Session,
    ids: np.ndarray,
    embed: Callable[[np.ndarray], np.ndarray],
    out: np.ndarray | RowsFile,
    *,
    chunk_songs: int = EMBED_CHUNK,
) -> None:
    """Write the embeddings of the songs `ids` into `out` (an array, or the cache's new
    file), a chunk at a time."""
    for start in range(0, len(ids), chunk_songs):
        chunk = ids[start : start + chunk_songs]
        out[start : start + len(chunk)] = embed(read_features_of(session, chunk))


def build_index(
    session: Session,
    embed: Callable[[np.ndarray], np.ndarray],
    dim: int,
    *,
    spec: IndexSpec | None = None,
    cache: EmbeddingCache | None = None,
    model_sha256: str = "",
    scoring: Scoring | None = None,
) -> ScoredIndex:
    """Index every stored song, reusing persisted embeddings, index and radii when they match."""
    spec = spec or IndexSpec()
    scoring = scoring or Scoring()
    version = catalogue_version(session)  # first: a change after this makes the key stale
    rows = read_song_rows(session)
    if cache is None:
        in_memory = np.empty((len(rows), dim), dtype=np.float32)
        embed_songs(session, rows.ids, embed, in_memory)
        return ScoredIndex.build(
            FaissSongIndex.from_embeddings(rows, in_memory, spec), scoring=scoring
        )
    key = CacheKey.of(model_sha256=model_sha256, catalogue_version=version, ids=rows.ids, dim=dim)
    try:
        embeddings = _reusable_embeddings(session, cache, key, rows.ids, embed)
        if embeddings is None:
            embeddings = cache.compute(key, lambda out: embed_songs(session, rows.ids, embed, out))
            log.info("embedded %d songs and saved them to %s", len(rows), cache.root)
    except OSError as exc:  # a read-only disk, a path that is a file, no space left, ...
        log.warning(
            "cannot use the index cache %s (%s): serving without persisted embeddings",
            cache.root,
            exc,
        )
        return build_index(session, embed, dim, spec=spec, cache=None, scoring=scoring)
    if embeddings is None:  # written, then unreadable (e.g. removed meanwhile): keep in memory
        return build_index(session, embed, dim, spec=spec, cache=None, scoring=scoring)
    stored = cache.load_index(key, spec) if spec.approximate else None
    index = FaissSongIndex.from_embeddings(rows, embeddings, spec, faiss_index=stored)
    if spec.approximate and stored is None:
        try:
            cache.save_index(key, spec, index.faiss_index)
        except OSError as exc:
            log.warning("cannot persist the index in %s (%s)", cache.root, exc)
    # Radii come from searching this index, so they are kept per index spec and scoring k.
    name = f"neighbourhoods-{spec_digest(spec)}-k{scoring.k}-s{scoring.sample}"

    def persist(ids: np.ndarray, table: np.ndarray) -> None:
        """Save the table when it is computed (at build, or later in the background)."""
        if not np.array_equal(ids, rows.ids):  # the key names the catalogue as it was read
            log.info("songs changed while the neighbourhoods were computed: not persisted")
            return
        try:
            cache.save_array(key, name, table)
        except OSError as exc:
            log.warning("cannot persist the neighbourhoods in %s (%s)", cache.root, exc)

    saved = cache.load_array(key, name)
    return ScoredIndex.build(index, scoring=scoring, saved=saved, on_computed=persist)


def _reusable_embeddings(
    session: Session,
    cache: EmbeddingCache,
    key: CacheKey,
    ids: np.ndarray,
    embed: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray | None:
    embeddings = cache.load(key)
    if embeddings is None:
        return None
    if not spot_check(embeddings, ids, lambda some: read_features_of(session, some), embed):
        log.warning("persisted embeddings differ from the model's output: recomputing")
        cache.discard(key)
        return None
    log.info("reusing %d persisted embeddings (fingerprint %s)", len(ids), key.digest()[:12])
    return embeddings
