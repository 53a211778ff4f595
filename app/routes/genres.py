"""GET /genres: the top-level genres a similarity query may filter on."""

from fastapi import APIRouter

from app.catalogue.reads import top_level_genres
from app.deps import SessionDep
from app.schemas import GenresOut

router = APIRouter(tags=["genres"])


@router.get("/genres", response_model=GenresOut)
def list_genres(session: SessionDep) -> GenresOut:
    """Top-level genre titles, sorted: the values the `genre` filter accepts."""
    return GenresOut(genres=sorted(top_level_genres(session)))
