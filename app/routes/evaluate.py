"""POST /evaluate: the paper's mean AUC, mAP, recall@10 and nDCG@10 on the catalogue
or on a posted labelled set."""

from __future__ import annotations

import logging
import threading
import time

import anyio
import numpy as np
from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from app.catalogue.reads import read_labelled_features
from app.deps import BundleDep, ServiceDep, SessionDep
from app.orm import FMA
from app.routes import JSONBodyRoute
from app.schemas import EvaluateIn, EvaluateOut
from training.data.split import ArtistSplit
from training.evaluation.metrics import EvaluationStopped, stop_when
from training.evaluation.scoring import scoring_asked
from training.evaluation.spaces import evaluate_on_split

router = APIRouter(tags=["evaluation"], route_class=JSONBodyRoute)
log = logging.getLogger("musicsim.evaluate")
DISCONNECT_POLL_SECONDS = 0.25


@router.post("/evaluate", response_model=EvaluateOut)
async def evaluate_catalogue(
    request: Request,
    session: SessionDep,
    bundle: BundleDep,
    service: ServiceDep,
    body: EvaluateIn | None = None,
) -> EvaluateOut:
    """Artist-retrieval mean AUC, by default on the model's evaluation artists."""
    # Async, unlike the other handlers: while a thread ranks, this task watches for the
    # client leaving, and the ranking stops between blocks once it has left or the
    # time limit has passed (a sync handler would rank on for nobody).
    left = threading.Event()
    limit_s = service.settings.evaluate_timeout_seconds
    deadline = time.monotonic() + limit_s

    def should_stop() -> bool:
        return left.is_set() or time.monotonic() > deadline

    stopped: EvaluationStopped | HTTPException | None = None
    async with anyio.create_task_group() as watchers:
        watchers.start_soon(_watch_for_disconnect, request, left)
        try:
            answer = await run_in_threadpool(
                _evaluate, session, bundle, service, body or EvaluateIn(), should_stop
            )
        except (EvaluationStopped, HTTPException) as exc:  # raised below, outside the group
            stopped = exc
        finally:
            watchers.cancel_scope.cancel()
    if isinstance(stopped, HTTPException):
        raise stopped
    if stopped is not None:
        reason = "the client disconnected" if left.is_set() else f"it passed {limit_s:g} s"
        log.warning("evaluation stopped: %s", reason)
        raise HTTPException(
            503,
            f"the evaluation was stopped: it passed the time limit of {limit_s:g} s "
            "(MUSICSIM_EVALUATE_TIMEOUT_SECONDS); post fewer songs or leave every_track off",
        ) from stopped
    return answer


async def _watch_for_disconnect(request: Request, left: threading.Event) -> None:
    while not await request.is_disconnected():
        await anyio.sleep(DISCONNECT_POLL_SECONDS)
    left.set()


def _evaluate(session, bundle, service, body: EvaluateIn, should_stop) -> EvaluateOut:
    if body.songs is not None:
        labels = [str(song.artist) for song in body.songs]
        _, artist_ids = np.unique(labels, return_inverse=True)
        check_posted_work(artist_ids, every_track=body.every_track, settings=service.settings)
        features = np.asarray([song.features for song in body.songs], dtype=np.float32)
        # A posted set is scored whole: every one of its artists is an evaluation artist.
        split = ArtistSplit(train=np.empty(0, np.int64), eval=np.unique(artist_ids))
    else:
        # The imported catalogue only: cold-start additions would make the figure
        # drift from `musicsim evaluate` on the same FMA files.
        artist_ids, features = read_labelled_features(session, source=FMA)
        split = bundle.split
    # As `musicsim evaluate`: the model space as its bundle was chosen, the baselines by l2.
    recorded = bundle.scoring if body.space == "model" else None
    scoring = scoring_asked(body.scoring, body.scoring_k, recorded=recorded)
    try:
        with stop_when(should_stop):
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
        scoring_k=scoring.k,
        hubness_skewness=row.hubness_skewness,
        antihub_share=row.antihub_share,
        max_k_occurrence=row.max_k_occurrence,
        coverage=row.coverage,
    )


def check_posted_work(artist_ids: np.ndarray, *, every_track: bool, settings) -> None:
    """413 past the songs limit, or when queries x songs passes the work limit."""
    n = len(artist_ids)
    if n > settings.max_evaluate_songs:
        raise HTTPException(
            413, f"at most {settings.max_evaluate_songs} songs may be posted, got {n}"
        )
    counts = np.bincount(artist_ids)
    queries = int(counts[counts >= 2].sum()) if every_track else int((counts >= 2).sum())
    if queries * n > settings.max_evaluate_work:
        raise HTTPException(
            413,
            f"{queries} queries ranking {n} songs is {queries * n} distances, more than "
            f"MUSICSIM_MAX_EVALUATE_WORK={settings.max_evaluate_work}; post fewer songs"
            + (" or leave every_track off" if every_track else ""),
        )
