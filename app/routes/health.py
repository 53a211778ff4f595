"""GET /health."""

import dataclasses

from fastapi import APIRouter, Request

from app.deps import BundleDep, IndexDep
from app.schemas import AudioInfo, HealthOut, ModelInfo, NeighbourhoodsInfo, ScoringInfo
from training.evaluation.scoring import SCORINGS

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def read_health(request: Request, index: IndexDep, bundle: BundleDep) -> HealthOut:
    """Liveness, the number of songs indexed, the index kind built, the model served, the
    scorings' state and how many audio workers are up."""
    model = ModelInfo(name=bundle.name, manifest_sha256=bundle.manifest_sha256)
    chosen = index.scoring
    progress = dataclasses.asdict(index.neighbourhood_progress())
    scoring = ScoringInfo(
        name=chosen.name,
        k=chosen.k,
        pool=chosen.pool,
        allowed=list(SCORINGS),
        neighbourhoods=NeighbourhoodsInfo(**progress),
    )
    up, workers = request.app.state.audio_workers.status()
    return HealthOut(
        status="ok",
        songs_indexed=len(index),
        index_kind=index.kind,
        model=model,
        scoring=scoring,
        audio=AudioInfo(workers=workers, up=up),
    )
