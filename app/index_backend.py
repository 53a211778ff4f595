"""The one place that chooses the index backend: FAISS in this process, or Milvus.

    >>> index = open_index(session, settings, bundle)     # filled with every stored song
    >>> close_index(index)

Both backends have SongIndex's interface (add, search with filters, ids, missing,
embedding_of, len, in, kind), so catalogue, sync and routes hold no
backend-specific code. FAISS indexes are built from the whole catalogue at once
(IVF kinds train on it) and persist their embeddings; a Milvus collection
persists itself and is brought up to date with the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from app.catalogue import build_index, index_missing_songs
from app.config import Settings
from app.embedding_cache import EmbeddingCache
from app.index import SongIndex
from app.index_kinds import IndexSpec
from training.artefacts import Bundle

if TYPE_CHECKING:
    from app.index_milvus import MilvusSongIndex

    AnySongIndex = SongIndex | MilvusSongIndex


def open_index(session: Session, settings: Settings, bundle: Bundle) -> AnySongIndex:
    """The configured index, holding every song stored in the database."""
    dim = bundle.embedding_dim
    if settings.index_backend == "faiss":
        cache = EmbeddingCache(settings.index_cache_dir) if settings.index_cache_dir else None
        return build_index(
            session,
            bundle.embed,
            dim,
            spec=index_spec(settings),
            cache=cache,
            model_sha256=bundle.manifest_sha256,
        )
    index = open_milvus_collection(settings, dim=dim, model_sha256=bundle.manifest_sha256)
    index_missing_songs(session, index, bundle.embed)
    return index


def open_milvus_collection(settings: Settings, *, dim: int, model_sha256: str):
    """The Milvus collection of this model (created when absent).

    The collection's name carries the model's manifest hash: embeddings of another
    model are never mixed with this one's, and a new model starts its own collection.
    """
    # Imported here: pymilvus is loaded only by services that use Milvus.
    from app.index_milvus import MilvusSongIndex

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
        ivf_nlist=settings.index_ivf_nlist,
        ivf_nprobe=settings.index_ivf_nprobe,
        pq_refine=settings.index_pq_refine,
        exact_below=settings.index_exact_below,
    )


def close_index(index: AnySongIndex) -> None:
    """Release the index's connection (Milvus); the FAISS index needs nothing."""
    close = getattr(index, "close", None)
    if close is not None:
        close()
