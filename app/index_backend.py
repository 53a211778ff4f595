"""The one place that chooses the index backend: FAISS in this process, or Milvus.

    >>> index = open_index(settings, dim=518, model_sha256=bundle.manifest_sha256)
    >>> build_index(session, bundle.embed, index)

Both backends have SongIndex's interface (add, search with filters, largest_id,
embedding_of, len, in), so catalogue, sync and routes hold no backend-specific code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.config import Settings
from app.index import SongIndex

if TYPE_CHECKING:
    from app.index_milvus import MilvusSongIndex

    AnySongIndex = SongIndex | MilvusSongIndex


def open_index(settings: Settings, *, dim: int, model_sha256: str) -> AnySongIndex:
    """An empty FAISS index, or the Milvus collection of this model (created when absent).

    The collection's name carries the model's manifest hash: embeddings of another
    model are never mixed with this one's, and a new model starts its own collection.
    """
    if settings.index_backend == "faiss":
        return SongIndex(dim=dim)
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


def close_index(index: AnySongIndex) -> None:
    """Release the index's connection (Milvus); the FAISS index needs nothing."""
    close = getattr(index, "close", None)
    if close is not None:
        close()
