"""Changing the catalogue at run time: cold-start songs, deletions and corrections.

>>> song = add_song(session, NewSong(title="Demo", artist="New band", features=vector))
>>> delete_songs(session, [song.id])                  # and its artist, when now unused
>>> update_song(session, song.id, {"title": "Better title"})
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from app.catalogue import CatalogueError
from app.catalogue.reads import top_level_genres
from app.orm import COLD_START, Artist, Song, features_to_blob


@dataclass(frozen=True)
class NewSong:
    title: str
    artist: int | str  # an existing artist's id, or a name
    features: np.ndarray  # (518,) float32
    genre: str | None = None
    duration: float | None = None
    location: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def add_song(session: Session, new: NewSong) -> Song:
    """Store a cold-start song and commit; returns it with its new id."""
    _lock_for_writing(session)
    artist = _resolve_artist(session, new)
    genre_id = None
    if new.genre is not None:
        genres = top_level_genres(session)
        if new.genre not in genres:
            shown = new.genre if len(new.genre) <= 80 else f"{new.genre[:80]}..."
            raise CatalogueError(f"unknown genre {shown!r}; known: {sorted(genres)}")
        genre_id = genres[new.genre]
    song = Song(
        title=new.title,
        artist=artist,
        genre_id=genre_id,
        duration=new.duration,
        features=features_to_blob(new.features),
        source=COLD_START,
    )
    session.add(song)
    session.commit()
    session.refresh(song)
    return song


def _lock_for_writing(session: Session) -> None:
    """Hold the database's write lock from here to the commit.

    Looking an artist up by name and creating it when absent must be one step: two
    requests creating the same new artist at once would otherwise both find none and
    both insert one, and that name could never be used again ("2 artists are named").
    """
    dialect = session.get_bind().dialect.name
    dbapi = session.connection().connection.dbapi_connection
    if dialect == "sqlite" and dbapi is not None and not dbapi.in_transaction:
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7262)"))  # one lock for all adds


def _resolve_artist(session: Session, new: NewSong) -> Artist:
    has_location = any(v is not None for v in (new.location, new.latitude, new.longitude))
    if isinstance(new.artist, int):
        artist = session.get(Artist, new.artist)
        if artist is None:
            raise CatalogueError(f"artist {new.artist} does not exist; give a name to create one")
        if has_location:
            raise CatalogueError("a location can only be given for a new artist")
        return artist
    same_name = session.scalars(select(Artist).where(Artist.name == new.artist)).all()
    if len(same_name) > 1:
        ids = [a.id for a in same_name]
        raise CatalogueError(f"{len(ids)} artists are named {new.artist!r} ({ids}); give an id")
    if same_name:
        if has_location:
            raise CatalogueError("a location can only be given for a new artist")
        return same_name[0]
    artist = Artist(
        name=new.artist, location=new.location, latitude=new.latitude, longitude=new.longitude
    )
    session.add(artist)
    return artist


def delete_songs(session: Session, song_ids: list[int]) -> list[int]:
    """Delete these songs (and their artists that no other song uses) and commit;
    returns the ids that existed."""
    _lock_for_writing(session)
    found = session.scalars(select(Song).where(Song.id.in_(song_ids))).unique().all()
    artists = {song.artist_id for song in found}
    for song in found:
        session.delete(song)
    session.flush()
    used = select(Song.artist_id).where(Song.artist_id.in_(artists))
    session.execute(delete(Artist).where(Artist.id.in_(artists), Artist.id.not_in(used)))
    session.commit()
    return [song.id for song in found]


PATCHABLE = ("title", "album", "album_artist", "track_number", "genre", "duration", "features")


def update_song(session: Session, song_id: int, changes: dict) -> Song | None:
    """Change the given fields of a song, bump its revision and commit; None when it does
    not exist. Other processes follow the revision (app.index.follower).

    changes: some of PATCHABLE; genre is a top-level genre title (or None), features
    a (518,) vector.
    """
    unknown = set(changes) - set(PATCHABLE)
    if unknown:
        raise CatalogueError(f"cannot change {sorted(unknown)}; can change {list(PATCHABLE)}")
    _lock_for_writing(session)
    song = session.get(Song, song_id)
    if song is None:
        return None
    for field, value in changes.items():
        if field == "genre":
            song.genre_id = None if value is None else _genre_id(session, value)
        elif field == "features":
            song.features = features_to_blob(value)
        else:
            setattr(song, field, value)
    # Under the write lock: two PATCHes of one song never read the same revision.
    song.revision = (song.revision or 0) + 1
    session.commit()
    session.refresh(song)
    return song


def _genre_id(session: Session, title: str) -> int:
    genres = top_level_genres(session)
    if title not in genres:
        raise CatalogueError(f"unknown genre {title!r}; known: {sorted(genres)}")
    return genres[title]
