"""Songs as answers show them, held in memory: a similarity read touches no ORM.

Every similarity answer lists its songs with the same attributes (id, title, artist,
genre, album, duration, audio URL: `similar_song`), and GET /songs/{id}/similar adds
the query song's own record (`song_out`). `SongCards` keeps, for every stored song,
those attributes already serialised as JSON (about 0.7 kB a song in memory), loaded at start-up
and refreshed by id after every write that changes a song: adds, PATCH and DELETE
through `app.similarity`, and what the follower finds other processes changed. A
read then joins neighbours to their cards with dict look-ups and writes the answer
once: no ORM objects, no pydantic models built and validated again.

    >>> cards = SongCards.load(session)
    >>> cards.refresh(session, [song_id])          # after a commit that changed it
    >>> body = cards.similar_json(neighbours, query=song_id)   # bytes of a SimilarOut

The cards are built by the same functions that build the pydantic answers (one
definition of what a result item holds), so an attribute added to `SimilarSong`
reaches the lean answers too; distance and similarity, which differ per answer, are
written per request after the card's attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.catalogue.reads import top_level_genres
from app.catalogue.recordings import recording_key
from app.index.protocol import Neighbour
from app.orm import Song
from app.schemas import ArtistRef, SimilarSong, SongOut

LOAD_CHUNK = 2000  # songs per read at start-up and per refresh: below SQLite's parameter bound


def audio_url(song: Song) -> str | None:
    return f"/songs/{song.id}/audio" if song.file_path else None


def song_out(song: Song) -> SongOut:
    artist = song.artist
    return SongOut(
        id=song.id,
        title=song.title,
        artist=ArtistRef(id=artist.id, name=artist.name),
        genre=song.genre.title if song.genre else None,
        duration=song.duration,
        album=song.album,
        location=artist.location,
        latitude=artist.latitude,
        longitude=artist.longitude,
        source=song.source,
        file=song.file_path,
        audio_url=audio_url(song),
        album_artist=song.album_artist,
        track_number=song.track_number,
    )


def similar_song(song: Song, *, distance: float, similarity: float | None = None) -> SimilarSong:
    """One result item: the one place every list answer builds its items."""
    genre = song.genre
    return SimilarSong(
        id=song.id,
        title=song.title,
        artist=ArtistRef(id=song.artist.id, name=song.artist.name),
        genre=genre.title if genre is not None else None,
        distance=distance,
        similarity=similarity,
        album=song.album,
        duration=song.duration,
        audio_url=audio_url(song),
        album_artist=song.album_artist,
        track_number=song.track_number,
    )


@dataclass(frozen=True, slots=True)
class SongCard:
    """One song's answer attributes: its result item (open, for distance and similarity to
    follow), its own record, and what filters and playlists need."""

    id: int
    artist_id: int
    title: str | None
    artist_name: str
    duration: float | None
    recording: str | None  # its recording key: copies of one recording share it
    item_head: bytes  # b'{"id":1,...,"audio_url":null' : the item without its scores
    record: bytes  # the SongOut JSON

    @classmethod
    def of(cls, song: Song) -> SongCard:
        item = similar_song(song, distance=0.0).model_dump(mode="json")
        del item["distance"], item["similarity"]  # per answer: written by `item`
        return cls(
            id=song.id,
            artist_id=song.artist_id,
            title=song.title,
            artist_name=song.artist.name,
            duration=song.duration,
            recording=recording_key(title=song.title, artist=song.artist.name),
            item_head=orjson.dumps(item)[:-1],
            # A copy: orjson's own bytes keep their 4 kB buffer (8x the JSON, measured).
            record=bytes(memoryview(orjson.dumps(song_out(song).model_dump(mode="json")))),
        )

    def item(self, neighbour: Neighbour) -> bytes:
        scores = {"distance": neighbour.distance, "similarity": neighbour.similarity}
        return self.item_head + b"," + orjson.dumps(scores)[1:]


class SongCards:
    """Cards by song id, and the top-level genres; reads take no lock.

    A refresh replaces whole entries of a dict (one atomic store each), so a reader
    sees each song either as it was or as it is. Writers serialise on a lock.
    """

    def __init__(self) -> None:
        self._cards: dict[int, SongCard] = {}
        self._genres: frozenset[str] = frozenset()
        self._writing = threading.Lock()

    @classmethod
    def load(cls, session: Session) -> SongCards:
        """Every stored song's card."""
        cards = cls()
        ids = session.scalars(select(Song.id).order_by(Song.id)).all()
        cards.refresh(session, ids)
        return cards

    def refresh(self, session: Session, song_ids: Iterable[int]) -> None:
        """Re-read these songs: stored ones get fresh cards, the others lose theirs."""
        ids = [int(i) for i in song_ids]
        with self._writing:
            for start in range(0, len(ids), LOAD_CHUNK):
                chunk = ids[start : start + LOAD_CHUNK]
                query = (
                    select(Song)
                    .where(Song.id.in_(chunk))
                    .options(defer(Song.features))
                    .execution_options(populate_existing=True)  # the session may hold old rows
                )
                found = {s.id: SongCard.of(s) for s in session.scalars(query).unique()}
                for song_id in chunk:
                    card = found.get(song_id)
                    if card is None:
                        self._cards.pop(song_id, None)
                    else:
                        self._cards[song_id] = card
            self._genres = frozenset(top_level_genres(session))

    def sync(self, session: Session, indexed: Iterable[int], revised: Iterable[int] = ()) -> None:
        """Cards for every indexed song (e.g. added to a shared Milvus collection by another
        process), cards re-read for songs no longer indexed (deleted, or not yet back), and
        for `revised` songs (changed in place by another process's PATCH)."""
        ids = np.asarray(list(indexed), dtype=np.int64)
        held = np.fromiter(self._cards, dtype=np.int64, count=len(self._cards))
        changed = np.union1d(np.setxor1d(ids, held), np.asarray(list(revised), dtype=np.int64))
        self.refresh(session, changed.tolist())

    def __len__(self) -> int:
        return len(self._cards)

    def recording_keys(self, song_ids: Iterable[int]) -> dict[int, str | None]:
        """Song id -> its recording key (app.similarity.search_distinct); no card, no entry."""
        cards = self._cards
        return {i: c.recording for i in song_ids if (c := cards.get(i)) is not None}

    def get(self, song_id: int) -> SongCard | None:
        return self._cards.get(song_id)

    @property
    def genres(self) -> frozenset[str]:
        """Top-level genre titles, as of the last load or refresh."""
        return self._genres

    def found(self, neighbours: Sequence[Neighbour]) -> list[tuple[SongCard, Neighbour]]:
        """Each neighbour with its card; songs deleted since they were found are left out."""
        cards = self._cards
        return [(c, n) for n in neighbours if (c := cards.get(n.song_id)) is not None]

    def results_json(self, neighbours: Sequence[Neighbour]) -> bytes:
        """The JSON list of result items (SimilarSong) of these neighbours."""
        return b"[" + b",".join(card.item(n) for card, n in self.found(neighbours)) + b"]"

    def similar_json(self, neighbours: Sequence[Neighbour], *, query: SongCard | None) -> bytes:
        """A SimilarOut: the query song's record (or null) and the results."""
        head = b'{"query":' + (query.record if query is not None else b"null")
        return head + b',"results":' + self.results_json(neighbours) + b"}"
