"""Service settings, read from MUSICSIM_* environment variables and a `.env` file.

>>> settings = Settings(database_url="sqlite:///tmp/test.db")
>>> app = create_app(settings)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
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
    map_points: int = Field(
        3000, ge=2, le=100_000, description="Most songs drawn on the explorer's 2-D map"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`musicsim serve` logs: text lines, or one JSON object per line"
    )
