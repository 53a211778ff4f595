"""Service settings, read from MUSICSIM_* environment variables and a `.env` file.

>>> settings = Settings(database_url="sqlite:///tmp/test.db")
>>> app = create_app(settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MUSICSIM_", env_file=".env", extra="ignore")

    model_dir: Path = Field(Path("models/default"), description="Model bundle to serve")
    database_url: str = Field(
        "sqlite:///data/musicsim.db", description="SQLAlchemy URL of the metadata store"
    )
    api_key: str | None = Field(None, description="Key required in X-API-Key for writes")
    sync_interval_seconds: float = Field(
        1.0, gt=0, le=3600, description="How often each process indexes songs others added"
    )
    api_key_for_reads: bool = Field(False, description="Require the API key for reads too")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; none when empty"
    )
    max_k: int = Field(1000, ge=1, description="Largest k a similarity query may ask for")
    max_batch: int = Field(256, ge=1, description="Most feature vectors in one batch query")
    max_json_bytes: int = Field(
        8_000_000, ge=1024, description="Largest JSON request body, bytes (413 beyond)"
    )
    max_upload_bytes: int = Field(
        25_000_000, ge=1024, description="Largest multipart upload, bytes (413 beyond)"
    )
    audio_excerpt_seconds: float = Field(
        30.0, gt=0, le=600, description="Seconds of an upload analysed (its middle)"
    )
    max_evaluate_songs: int = Field(
        50_000, ge=2, description="Most songs a caller may post to /evaluate"
    )
    index_kind: Literal["flat", "hnsw", "ivf", "ivfpq"] = Field(
        "flat", description="FAISS index: exact flat, or approximate hnsw, ivf, ivfpq"
    )
    index_hnsw_m: int = Field(32, ge=2, le=256, description="HNSW graph degree")
    index_hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build candidate list")
    index_hnsw_ef_search: int = Field(128, ge=1, description="HNSW search candidate list")
    index_ivf_nlist: int = Field(0, ge=0, description="IVF lists; 0 = about sqrt(n)")
    index_ivf_nprobe: int = Field(32, ge=1, description="IVF lists visited per query")
    index_pq_refine: int = Field(
        10, ge=1, description="IVF-PQ: candidates per answer re-ranked exactly"
    )
    index_exact_below: int = Field(
        20_000, ge=0, description="Approximate kinds search a filter passing fewer songs exactly"
    )
    index_cache_dir: Path | None = Field(
        Path("data/index-cache"),
        description="Where embeddings and indexes persist across restarts; empty disables",
    )
    index_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="Vector index: FAISS in this process, or a Milvus collection"
    )
    milvus_uri: str = Field(
        "data/milvus.db",
        description="Milvus Lite file (path ending in .db) or a Milvus server URL",
    )
    milvus_token: str | None = Field(None, description="Milvus credentials, 'user:password'")
    milvus_collection: str = Field(
        "musicsim_songs",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Collection name prefix; the model's manifest hash is appended",
    )

    map_points: int = Field(
        3000, ge=2, le=100_000, description="Most songs drawn on the explorer's 2-D map"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`musicsim serve` logs: text lines, or one JSON object per line"
    )

    # --- serving speed and memory (issue 18) ---
    index_store: Literal["float32", "float16", "sq8"] = Field(
        "float32",
        description="Flat index: the copy scanned per query; float16/sq8 re-rank with float32",
    )
    index_store_refine: int = Field(
        4, ge=1, le=100, description="float16/sq8 stores: candidates per answer re-ranked"
    )
    coalesce_wait_ms: float = Field(
        0.5, ge=0, le=5, description="Flat: longest wait to batch concurrent queries; 0 = off"
    )
    workers: int = Field(
        1, ge=1, le=64, description="`musicsim serve` processes sharing the persisted embeddings"
    )

    @field_validator("index_cache_dir", mode="before")
    @classmethod
    def _empty_disables(cls, value):
        # MUSICSIM_INDEX_CACHE_DIR= (empty) turns persistence off rather than meaning "."
        return None if value == "" else value

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri_is_a_lite_file_or_a_url(cls, uri: str) -> str:
        if "://" in uri or uri.endswith(".db"):
            return uri
        raise ValueError(
            f"expected a Milvus Lite file ending in .db or a URL such as "
            f"http://milvus:19530, got {uri!r}"
        )
