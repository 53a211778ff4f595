"""A library song's audio file, streamed with HTTP Range support (for <audio> seeking)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from app.catalogue.files import audio_type, song_file
from app.deps import ServiceDep, SessionDep
from app.routes.songs import SongId, get_song

router = APIRouter(prefix="/songs", tags=["library"])


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
    root = service.settings.library_root
    if root is None and song.catalogue is not None:
        root = song.catalogue.root
    path = song_file(file_path=song.file_path, root=root)
    if path is None:
        raise HTTPException(404, f"song {song_id} has no audio file under the library root")
    # Starlette's FileResponse answers Range with 206 and Content-Range (416 when unsatisfiable).
    return FileResponse(
        path, media_type=audio_type(path), filename=path.name, content_disposition_type="inline"
    )
