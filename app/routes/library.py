"""Library songs: their audio file (with HTTP Range, for <audio> seeking), deletion and
correction of any song."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Response
from fastapi.responses import FileResponse

from app.catalogue import CatalogueError
from app.catalogue.files import audio_type, song_file
from app.deps import BundleDep, IndexDep, ServiceDep, SessionDep, require_api_key
from app.routes import JSONBodyRoute
from app.routes.songs import SongId, get_song, song_out
from app.schemas import SongOut, SongPatch
from app.similarity import delete_and_unindex, update_and_reindex

router = APIRouter(prefix="/songs", tags=["library"], route_class=JSONBodyRoute)


@router.get(
    "/{song_id:int}/audio",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/*": {}}, "description": "The whole file"},
        206: {"description": "The byte range asked for in the Range header"},
    },
)
def read_song_audio(song_id: SongId, session: SessionDep, service: ServiceDep) -> FileResponse:
    """The song's audio file (library songs only); honours Range requests."""
    song = get_song(session, song_id)
    root: Path | str | None = service.settings.library_root
    if root is None and song.catalogue is not None:
        root = song.catalogue.root
    path = song_file(file_path=song.file_path, root=root)
    if path is None:
        raise HTTPException(404, f"song {song_id} has no audio file under the library root")
    # Starlette's FileResponse answers Range with 206 and Content-Range (416 when unsatisfiable).
    return FileResponse(
        path, media_type=audio_type(path), filename=path.name, content_disposition_type="inline"
    )


@router.delete("/{song_id:int}", status_code=204, dependencies=[Depends(require_api_key)])
def delete_song(
    song_id: SongId, session: SessionDep, index: IndexDep, service: ServiceDep
) -> Response:
    """Delete a song: it is never returned again, here at once and by other replicas soon."""
    if not delete_and_unindex(session, index, [song_id], cards=service.cards):
        raise HTTPException(404, f"song {song_id} not found")
    return Response(status_code=204)


@router.patch("/{song_id:int}", response_model=SongOut, dependencies=[Depends(require_api_key)])
def update_song(
    song_id: SongId,
    body: SongPatch,
    session: SessionDep,
    index: IndexDep,
    bundle: BundleDep,
    service: ServiceDep,
) -> SongOut:
    """Correct a song's metadata; new features re-embed it at once."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    if "features" in changes:
        changes["features"] = np.asarray(changes["features"], dtype=np.float32)
    try:
        song = update_and_reindex(
            session, index, bundle.embed, song_id, changes, cards=service.cards
        )
    except CatalogueError as exc:
        raise HTTPException(422, str(exc)) from exc
    if song is None:
        raise HTTPException(404, f"song {song_id} not found")
    if "features" in changes:  # the index holds the song exactly as this revision stores it
        service.follower.note_revision(song.id, song.revision)
    return song_out(song)
