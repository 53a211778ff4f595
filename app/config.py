"""Service settings, read from MUSICSIM_* environment variables and a `.env` file.

>>> settings = Settings(database_url="sqlite:///tmp/test.db")
>>> app = create_app(settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Milvus answers at most this many neighbours per query (its top-k bound).
MILVUS_MAX_NEIGHBOURS = 16_384


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
        7_500, ge=2, description="Most songs a caller may post to /evaluate"
    )
    index_kind: Literal["flat", "hnsw", "ivf", "ivfpq"] = Field(
        "flat", description="FAISS index: exact flat, or approximate hnsw, ivf, ivfpq"
    )
    index_hnsw_m: int = Field(32, ge=2, le=256, description="HNSW graph degree")
    index_hnsw_ef_construction: int = Field(80, ge=1, description="HNSW build candidate list")
    index_hnsw_ef_search: int = Field(
        64, ge=1, description="HNSW search candidate list: recall@10 0.999 at FMA size (BENCHMARKS)"
    )
    index_hnsw_variance: float = Field(
        0.99,
        gt=0,
        le=1,
        description="HNSW graph over the principal components holding this share of the "
        "variance (1 = full vectors); its candidates are re-ranked exactly",
    )
    index_hnsw_refine: int = Field(
        2, ge=1, description="HNSW over components: candidates per answer re-ranked exactly"
    )
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

    # Playlists (/recommend, /radio, /songs/{a}/path/{b}): bounds on what one request may cost.
    playlist_max_length: int = Field(
        200, ge=2, le=10_000, description="Most songs in one path or radio answer"
    )
    playlist_max_seeds: int = Field(
        50, ge=1, le=10_000, description="Most positive + negative examples, or radio seeds"
    )
    playlist_max_pool: int = Field(
        16_384, ge=16, le=16_384, description="Most candidates one playlist search considers"
    )
    # --- your own music (issue 14) ---
    library_root: Path | None = Field(
        None,
        description="Folder library songs' files are relative to; by default the root "
        "recorded when the library was imported",
    )
    serve_misfit_model: bool = Field(
        False,
        description="Serve a model whose feature statistics do not fit the catalogue",
    )
    # Scoring (training.evaluation.scoring): how the service ranks its L2 candidates.
    scoring: Literal["l2", "local-scaling", "mutual-proximity"] | None = Field(
        None, description="Default scoring of similarity queries; empty = the bundle's"
    )
    scoring_k: int | None = Field(
        None, ge=1, le=1000, description="Neighbours of a song's radius; empty = the bundle's"
    )
    scoring_pool: int = Field(
        100, ge=100, le=100_000, description="L2 candidates re-ranked: max(10 k, this)"
    )
    scoring_warmup: bool = Field(
        True,
        description="l2 service: compute the other scorings' neighbourhoods in the background "
        "from start-up; off, from the first request for one (503 until done either way)",
    )

    # Playlists, continued (issue 17): MMR costs k x pool x dimensions, the one playlist
    # cost that grows with k squared (the pool is 5k): diverse mixes have their own k bound.
    playlist_max_diverse_k: int = Field(
        200, ge=1, le=10_000, description="Largest k of a /recommend with diversity > 0"
    )

    @field_validator("scoring", "scoring_k", mode="before")
    @classmethod
    def _empty_is_the_bundles(cls, value):
        return None if value == "" else value

    @field_validator("scoring_pool")
    @classmethod
    def _pool_within_the_backends_bound(cls, pool: int, info: ValidationInfo) -> int:
        # The scorings fetch the pool in one search (and again for each added song's
        # neighbours): past Milvus's bound every such search would fail.
        if info.data.get("index_backend") == "milvus" and pool > MILVUS_MAX_NEIGHBOURS:
            raise ValueError(
                f"at most {MILVUS_MAX_NEIGHBOURS:,} with MUSICSIM_INDEX_BACKEND=milvus "
                f"(Milvus answers no more neighbours per query), got {pool:,}"
            )
        return pool

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
    audio_warm_up: bool | None = Field(
        None,
        description="Start the audio workers at start-up and compile the feature recipe "
        "before the first upload; empty = on under `musicsim serve`, off in-process",
    )

    @field_validator("index_cache_dir", mode="before")
    @classmethod
    def _empty_disables(cls, value):
        # MUSICSIM_INDEX_CACHE_DIR= (empty) turns persistence off rather than meaning "."
        return None if value == "" else value

    @field_validator("library_root", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
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

    # --- hardening: bounded cost per request (issue 16) ---
    audio_workers: int = Field(
        2, ge=1, le=64, description="Processes that analyse uploaded audio (one file each)"
    )
    audio_queue: int = Field(
        4, ge=0, le=1024, description="Uploads that may wait for a worker (503 beyond)"
    )
    audio_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest analysis of one upload (503, worker killed)"
    )
    audio_worker_memory_mb: int = Field(
        3072, ge=0, description="Address-space cap of each audio worker, MB; 0 = none"
    )
    # 7,500 songs of compact JSON (about 1,060 bytes each) fill the default 8 MB body.
    max_evaluate_work: int = Field(
        7_500 * 7_500, ge=1, description="Most queries x songs one POST /evaluate ranks"
    )
    evaluate_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest POST /evaluate; stopped (503) past it"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="Longest wait for a request's headers (connection closed)"
    )
    body_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="Longest wait for a request's whole body (408)"
    )
    keep_alive_seconds: int = Field(
        5, ge=1, le=600, description="Idle keep-alive connections are closed after this"
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="Largest request line plus headers, bytes (431 beyond)"
    )
    max_expensive_requests: int = Field(
        4, ge=1, description="Batch, audio and evaluate requests served at once (503 beyond)"
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per client address per minute (429 beyond); 0 = off"
    )
    max_batch_work: int = Field(
        25_600, ge=1, description="Most items x k in one batch query (413 beyond)"
    )

    @field_validator("api_key")
    @classmethod
    def _api_key_is_not_empty(cls, key: str | None) -> str | None:
        # An empty key would be a real one that an empty X-API-Key header matches.
        if key is not None and not key.strip():
            raise ValueError("the API key is empty: unset MUSICSIM_API_KEY, or give a real key")
        return key
