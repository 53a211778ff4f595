"""POST /evaluate: the paper's mean AUC, mAP, recall@10 and nDCG@10 on the catalogue
or on a posted labelled set."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from app.catalogue.reads import read_labelled_features
from app.deps import BundleDep, ServiceDep, SessionDep
from app.orm import FMA
from app.schemas import EvaluateIn, EvaluateOut
from training.data.split import ArtistSplit
from training.evaluation.scoring import Scoring
from training.evaluation.spaces import evaluate_on_split

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
        # A posted set is scored whole: every one of its artists is an evaluation artist.
        split = ArtistSplit(train=np.empty(0, np.int64), eval=np.unique(artist_ids))
    else:
        # The imported catalogue only: cold-start additions would make the figure
        # drift from `musicsim evaluate` on the same FMA files.
        artist_ids, features = read_labelled_features(session, source=FMA)
        split = bundle.split
    if body.scoring is None:  # the bundle was chosen with its scoring: its model row uses it
        name = bundle.scoring.name if body.space == "model" else "l2"
    else:
        name = body.scoring
    scoring = Scoring(name, k=body.scoring_k)
    try:
        (row,) = evaluate_on_split(
            features,
            artist_ids,
            split=split,
            model=bundle.model,
            zscore=bundle.zscore,
            seed=body.seed,
            spaces=(body.space,),
            every_track=body.every_track,
            scorings=(scoring,),
        )
    except ValueError as exc:
        raise HTTPException(422, f"cannot evaluate: {exc}") from exc
    if row.n_queries == 0:
        raise HTTPException(422, "cannot evaluate: every song is by the same artist")
    return EvaluateOut(
        mean_auc=row.mean_auc,
        n_queries=row.n_queries,
        n_songs=row.n_songs,
        space=row.space,
        mean_average_precision=row.mean_average_precision,
        recall_at_10=row.recall_at_10,
        ndcg_at_10=row.ndcg_at_10,
        scoring=row.scoring,
        hubness_skewness=row.hubness_skewness,
        antihub_share=row.antihub_share,
        max_k_occurrence=row.max_k_occurrence,
        coverage=row.coverage,
    )
