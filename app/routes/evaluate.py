"""POST /evaluate: the paper's mean AUC on the catalogue or on a posted labelled set."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from app.catalogue import read_labelled_features
from app.deps import BundleDep, ServiceDep, SessionDep
from app.schemas import EvaluateIn, EvaluateOut
from training.evaluate import evaluate_spaces, standard_spaces

router = APIRouter(tags=["evaluation"])


@router.post("/evaluate", response_model=EvaluateOut)
def evaluate_catalogue(
    session: SessionDep, bundle: BundleDep, service: ServiceDep, body: EvaluateIn | None = None
) -> EvaluateOut:
    """Artist-retrieval mean AUC, by default on the model's evaluation artists."""
    body = body or EvaluateIn()
    if body.songs is not None:
        if len(body.songs) > service.settings.max_evaluate_songs:
            limit = service.settings.max_evaluate_songs
            raise HTTPException(413, f"at most {limit} songs may be posted, got {len(body.songs)}")
        labels = [str(song.artist) for song in body.songs]
        _, artist_ids = np.unique(labels, return_inverse=True)
        features = np.asarray([song.features for song in body.songs], dtype=np.float32)
    else:
        all_artists, all_features = read_labelled_features(session)
        mask = bundle.split.eval_mask(all_artists)
        artist_ids, features = all_artists[mask], all_features[mask]
    spaces = standard_spaces(bundle.model, bundle.zscore)
    try:
        (row,) = evaluate_spaces(
            features, artist_ids, spaces={body.space: spaces[body.space]}, seed=body.seed
        )
    except ValueError as exc:
        raise HTTPException(422, f"cannot evaluate: {exc}") from exc
    if row.n_queries == 0:
        raise HTTPException(422, "cannot evaluate: every song is by the same artist")
    return EvaluateOut(
        mean_auc=row.mean_auc, n_queries=row.n_queries, n_songs=row.n_songs, space=row.space
    )
