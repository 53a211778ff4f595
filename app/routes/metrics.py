"""GET /metrics: Prometheus' text exposition format."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from app.telemetry.prometheus import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=PlainTextResponse)
def read_metrics(request: Request) -> Response:
    """Request counts and latency by route, songs indexed, the model served."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE)
