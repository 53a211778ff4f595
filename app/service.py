"""What the service opens once at start-up: database, model bundle, index.

>>> service = open_service(Settings())
>>> service.index.search(...)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.cards import SongCards
from app.catalogue.fit import check_bundle_fits
from app.config import Settings
from app.db import open_database
from app.index.follower import CatalogueFollower
from app.index.loading import open_index
from app.index.scored import ScoredIndex
from training.artefacts import Bundle, load_bundle

log = logging.getLogger("musicsim")


@dataclass
class Service:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    bundle: Bundle
    index: ScoredIndex  # any backend, searched through the scorings
    follower: CatalogueFollower
    cards: SongCards  # what answers show of each song, in memory (app/cards.py)

    @property
    def quick_search(self) -> bool:
        """Whether a search is short CPU work, done in the event loop without a thread hop:
        FAISS's approximate kinds (well under a millisecond). Exact scans take milliseconds
        and coalesce concurrent queries across threads; Milvus waits on the network."""
        return self.settings.index_backend == "faiss" and self.index.kind != "flat"

    def close(self) -> None:
        self.follower.stop()
        self.engine.dispose()
        self.index.close()


def open_service(settings: Settings) -> Service:
    """Load the bundle (refusing a bad one), upgrade the database, embed and index all songs."""
    started = time.perf_counter()
    bundle = load_bundle(settings.model_dir)
    engine = open_database(settings.database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as session:
        if not settings.serve_misfit_model:
            check_bundle_fits(session, bundle)  # a misfit model gives meaningless answers
        index = open_index(session, settings, bundle)
        cards = SongCards.load(session)
    log.info(
        "indexed %d songs (%s index) with model %s (manifest %s) in %.2f s",
        len(index),
        index.kind,
        bundle.name,
        bundle.manifest_sha256[:12],
        time.perf_counter() - started,
    )
    if settings.api_key is None:
        log.warning("MUSICSIM_API_KEY is not set: anyone can add songs")
    follower = CatalogueFollower(
        sessions,
        index,
        bundle.embed,
        interval_s=settings.sync_interval_seconds,
        on_change=cards.sync,
    )
    follower.start()
    return Service(settings, engine, sessions, bundle, index, follower, cards)
