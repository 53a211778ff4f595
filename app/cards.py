"""Songs as answers show them, held in memory: a similarity read touches no ORM.

Every similarity answer lists its songs with the same attributes (id, title, artist,
genre, album, duration, audio URL: `similar_song`), and GET /songs/{id}/similar adds
the query song's own record (`song_out`). `SongCards` keeps, for every stored song,
its record's values packed in one compact JSON array (`pack`: about a quarter of a
kilobyte a song in memory, so that a million songs fit beside the index), loaded at
start-up and refreshed by id after every write that changes a song: adds, PATCH and
DELETE through `app.similarity`, and what the follower finds other processes changed.
A read then joins neighbours to their cards with dict look-ups, unpacks the few it
shows and writes the answer once: no ORM objects, no pydantic models built and
validated again.

    >>> cards = SongCards.load(session)
    >>> cards.refresh(session, [song_id])          # after a commit that changed it
    >>> body = cards.similar_json(neighbours, query=cards.get(song_id))  # a SimilarOut

The cards are built by the same function that builds the pydantic records (`song_out`),
and a result item is its record cut to SimilarSong's fields (one definition of what
an item holds, shared with `similar_song`), so an attribute added to both models
reaches the lean answers too; distance and similarity, which differ per answer, are
written per request after the card's attributes."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

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
    """One result item: its song's record cut to the item's fields, then its scores."""
    record = song_out(song)
    return SimilarSong(
        **{f: getattr(record, f) for f in ITEM_FIELDS}, distance=distance, similarity=similarity
    )


# A card holds the SongOut fields; a result item is these of them, then its scores.
RECORD_FIELDS: tuple[str, ...] = tuple(SongOut.model_fields)
SCORE_FIELDS = ("distance", "similarity")
ITEM_FIELDS: tuple[str, ...] = tuple(f for f in SimilarSong.model_fields if f not in SCORE_FIELDS)
assert set(ITEM_FIELDS) <= set(RECORD_FIELDS), "a result item shows only what a record holds"
# A packed card's values that an item shows, in the item's order (the key comes first).
_item_values = itemgetter(*(1 + RECORD_FIELDS.index(f) for f in ITEM_FIELDS))
_ITEM_KEYS = (*ITEM_FIELDS, *SCORE_FIELDS)


def pack(song: Song) -> bytes:
    """A song's card as stored: one JSON array, its recording key and then its SongOut
    values in field order. No keys and one object a song: about a quarter of the memory
    of the JSON objects and attributes it replaces (bench/serving.py measures it)."""
    record = song_out(song).model_dump(mode="json")
    key = recording_key(title=song.title, artist=song.artist.name)
    # A copy: orjson's own bytes keep their 4 kB buffer (8x the JSON, measured).
    return bytes(memoryview(orjson.dumps([key, *record.values()])))


@dataclass(frozen=True, slots=True)
class SongCard:
    """One song's card, unpacked for an answer: its record's fields and recording key."""

    recording: str | None  # its recording key: copies of one recording share it
    fields: dict  # the SongOut fields, JSON-ready, in SongOut's order

    @classmethod
    def unpack(cls, packed: bytes) -> SongCard:
        key, *values = orjson.loads(packed)
        return cls(key, dict(zip(RECORD_FIELDS, values, strict=True)))

    @property
    def id(self) -> int:
        return self.fields["id"]

    @property
    def artist_id(self) -> int:
        return self.fields["artist"]["id"]

    @property
    def artist_name(self) -> str:
        return self.fields["artist"]["name"]

    @property
    def title(self) -> str | None:
        return self.fields["title"]

    @property
    def duration(self) -> float | None:
        return self.fields["duration"]

    @property
    def record(self) -> bytes:
        """The SongOut JSON."""
        return orjson.dumps(self.fields)


class SongCards:
    """Cards by song id, and the top-level genres; reads take no lock.

    A refresh replaces whole entries of a dict (one atomic store each), so a reader
    sees each song either as it was or as it is. Writers serialise on a lock.
    """

    def __init__(self) -> None:
        self._cards: dict[int, bytes] = {}  # song id -> its packed card (`pack`)
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
                found = {s.id: pack(s) for s in session.scalars(query).unique()}
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
        return {i: orjson.loads(c)[0] for i in song_ids if (c := cards.get(i)) is not None}

    def get(self, song_id: int) -> SongCard | None:
        packed = self._cards.get(song_id)
        return None if packed is None else SongCard.unpack(packed)

    @property
    def genres(self) -> frozenset[str]:
        """Top-level genre titles, as of the last load or refresh."""
        return self._genres

    def found(self, neighbours: Sequence[Neighbour]) -> list[tuple[SongCard, Neighbour]]:
        """Each neighbour with its card; songs deleted since they were found are left out."""
        cards = self._cards
        return [
            (SongCard.unpack(c), n) for n in neighbours if (c := cards.get(n.song_id)) is not None
        ]

    def results_json(self, neighbours: Sequence[Neighbour]) -> bytes:
        """The JSON list of result items (SimilarSong) of these neighbours (SimilarSong:
        the card's item fields, then the scores; unpacked here, not through SongCard)."""
        cards, items = self._cards, []
        for n in neighbours:
            packed = cards.get(n.song_id)
            if packed is not None:  # deleted since it was found
                values = (*_item_values(orjson.loads(packed)), n.distance, n.similarity)
                items.append(dict(zip(_ITEM_KEYS, values, strict=True)))
        return orjson.dumps(items)

    def similar_json(self, neighbours: Sequence[Neighbour], *, query: SongCard | None) -> bytes:
        """A SimilarOut: the query song's record (or null) and the results."""
        head = b'{"query":' + (query.record if query is not None else b"null")
        return head + b',"results":' + self.results_json(neighbours) + b"}"
