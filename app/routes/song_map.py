"""GET /songs/map: 2-D coordinates of (a bounded sample of) the catalogue."""

from fastapi import APIRouter

from app.deps import BundleDep, SessionDep, SongMapCacheDep
from app.schemas import SongMapOut

router = APIRouter(prefix="/songs", tags=["songs"])


@router.get("/map", response_model=SongMapOut)
def read_song_map(session: SessionDep, bundle: BundleDep, cache: SongMapCacheDep) -> SongMapOut:
    """PCA of the embeddings of up to MUSICSIM_MAP_POINTS songs, drawn once per process."""
    song_map = cache.get(session, bundle.embed)
    titles, artists, genres = zip(*song_map.labels, strict=True) if song_map.labels else ((),) * 3
    return SongMapOut(
        n_songs=song_map.n_songs,
        ids=song_map.ids.tolist(),
        x=song_map.xy[:, 0].round(5).tolist(),
        y=song_map.xy[:, 1].round(5).tolist(),
        titles=list(titles),
        artists=list(artists),
        genres=list(genres),
    )
