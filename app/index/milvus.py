"""The song index on Milvus: the same interface and results as app.index.faiss_index.FaissSongIndex.

For catalogues beyond one machine's memory: the vectors live in a Milvus
collection (a Milvus cluster, or Milvus Lite embedded in this process when the
URI is a file path), searched exactly (FLAT index, L2 metric).

    >>> index = MilvusSongIndex(dim=518, uri="data/milvus.db", collection="musicsim_songs")
    >>> index.add(SongRows(ids, artist_ids, genres, latitudes, longitudes), embeddings)
    >>> index.search(vectors, k=10, where=SongFilter(genre="Rock"))

Filters become a Milvus filter expression (artist, genre, query song), so a
filtered search still returns k songs whenever k songs match. Milvus
expressions have no great-circle distance: "near a place" is pre-filtered with
a latitude/longitude box that contains the circle, and finished exactly here
with the same haversine as the FAISS backend. When too few of the box's
candidates fall inside the circle, the search runs again restricted to the
exact ids inside the circle.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from app.catalogue.rows import SongRows
from app.config import MILVUS_MAX_NEIGHBOURS
from app.index.protocol import EARTH_RADIUS_KM, Near, Neighbour, SongFilter, haversine_km

# Milvus refuses a search asking for more than this many results (its topk limit).
MAX_TOPK = MILVUS_MAX_NEIGHBOURS
# Rows per insert and query vectors per search: far below Milvus's gRPC message cap.
_ROWS_PER_WRITE = 2_000
_QUERIES_PER_SEARCH = 512
# Ids per "id in [...]" expression: keeps expressions well below Milvus's length limit.
_IDS_PER_EXPRESSION = 4_096
_GENRE_MAX_LENGTH = 1024  # the genres table's title column
# A box a little larger than the circle: float rounding must not cut a song off.
_BOX_MARGIN_DEGREES = 1e-6


class MilvusIndexError(RuntimeError):
    """Milvus cannot be reached or holds an incompatible collection; the message says which."""


class MilvusSongIndex:
    """Exact L2 search over song embeddings in one Milvus collection; thread-safe.

    `near_overfetch` sets how many box candidates the first "near" search asks for,
    as a multiple of k.
    """

    kind = "milvus"  # reported by /health; Milvus's own FLAT index, exact

    def __init__(
        self,
        dim: int,
        *,
        uri: str,
        collection: str,
        token: str | None = None,
        near_overfetch: int = 2,
        connect_timeout_s: float = 10.0,
    ):
        self.dim = dim
        self.collection = collection
        self._near_overfetch = near_overfetch
        self._known: set[int] = set()  # ids written by this process (see ids())
        self._known_lock = threading.Lock()
        try:
            self._client = MilvusClient(uri=uri, token=token or "", timeout=connect_timeout_s)
            self._open_collection()
        except MilvusException as exc:
            # Milvus Lite refuses a file that another process has open.
            lite = "" if "://" in uri else " (a Milvus Lite file can be open in one process only)"
            raise MilvusIndexError(f"Milvus at {uri!r}: {exc.message}{lite}") from exc

    def close(self) -> None:
        self._client.close()

    def _open_collection(self) -> None:
        if self._client.has_collection(self.collection):
            fields = self._client.describe_collection(self.collection)["fields"]
            vector = next((f for f in fields if f["name"] == "embedding"), None)
            dim = None if vector is None else int(vector["params"]["dim"])
            if dim != self.dim:
                raise MilvusIndexError(
                    f"Milvus collection {self.collection!r} holds {dim}-dimensional vectors, "
                    f"not {self.dim}; choose another MUSICSIM_MILVUS_COLLECTION"
                )
            self._client.load_collection(self.collection)
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("artist_id", DataType.INT64)
        schema.add_field("genre", DataType.VARCHAR, max_length=_GENRE_MAX_LENGTH, nullable=True)
        schema.add_field("latitude", DataType.DOUBLE, nullable=True)
        schema.add_field("longitude", DataType.DOUBLE, nullable=True)
        index_params = self._client.prepare_index_params()
        # FLAT: exact search, so results match the FAISS backend's IndexFlatL2.
        index_params.add_index("embedding", index_type="FLAT", metric_type="L2")
        self._client.create_collection(
            self.collection,
            schema=schema,
            index_params=index_params,
            consistency_level="Strong",  # a song acknowledged as added is found at once
        )

    # --- the SongIndex interface -----------------------------------------------------------

    def __len__(self) -> int:
        result = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def __contains__(self, song_id: int) -> bool:
        return bool(self._client.get(self.collection, ids=[int(song_id)], output_fields=["id"]))

    def add(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Write songs by id (upsert); returns how many were not in the collection before.

        Writing an id again replaces its row with the same values, so adding is
        idempotent, and a restart after re-importing changed songs refreshes them.
        """
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"expected ({len(rows)}, {self.dim}) embeddings, got {vectors.shape}")
        if len(np.unique(rows.ids)) != len(rows):
            raise ValueError("song ids repeat within one add")
        if not len(rows):
            return 0
        long_genres = [g for g in rows.genres if g is not None and len(g) > _GENRE_MAX_LENGTH]
        if long_genres:
            raise ValueError(f"genre titles longer than {_GENRE_MAX_LENGTH} characters")
        present = self._present_ids(rows.ids)
        for start in range(0, len(rows), _ROWS_PER_WRITE):
            chunk = slice(start, start + _ROWS_PER_WRITE)
            self._client.upsert(self.collection, list(_records(rows, vectors, chunk)))
        with self._known_lock:
            self._known.update(int(i) for i in rows.ids)
        return len(rows) - len(present)

    def remove(self, song_ids: np.ndarray) -> int:
        """Delete these songs' rows from the collection; returns how many it held."""
        ids = [int(i) for i in song_ids]
        if not ids:
            return 0
        present = self._present_ids(np.asarray(ids, dtype=np.int64))
        if present:
            self._client.delete(self.collection, ids=sorted(present))
        with self._known_lock:
            self._known.difference_update(ids)
        return len(present)

    def replace(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """An upsert, as `add` is: Milvus swaps each row by its primary key."""
        return len(rows) - self.add(rows, embeddings)

    def stored_ids(self) -> np.ndarray:
        """Every id in the collection (which outlives restarts), read in pages."""
        iterator = self._client.query_iterator(
            self.collection, filter="id >= 0", output_fields=["id"], batch_size=_ROWS_PER_WRITE
        )
        found: list[int] = []
        try:
            while page := iterator.next():
                found.extend(int(hit["id"]) for hit in page)
        finally:
            iterator.close()
        return np.asarray(found, dtype=np.int64)

    def ids(self) -> np.ndarray:
        """The song ids this process has written or found in the collection (the follower's
        view: a start-up writes every stored song, so this covers the database)."""
        with self._known_lock:
            return np.fromiter(self._known, dtype=np.int64, count=len(self._known))

    def missing(self, song_ids: np.ndarray) -> np.ndarray:
        """Those of song_ids not in `ids()`, in their order."""
        ids = np.asarray(song_ids, dtype=np.int64)
        with self._known_lock:
            return ids[[int(i) not in self._known for i in ids]]

    def embedding_of(self, song_id: int) -> np.ndarray:
        found = self._client.get(self.collection, ids=[int(song_id)], output_fields=["embedding"])
        if not found:
            raise KeyError(song_id)
        return np.asarray(found[0]["embedding"], dtype=np.float32)

    def embeddings_of(self, song_ids: np.ndarray) -> np.ndarray:
        """(len(song_ids), dim) stored embeddings, in the order asked; KeyError when absent."""
        ids = [int(i) for i in song_ids]
        if not ids:
            return np.empty((0, self.dim), dtype=np.float32)
        found = self._client.get(self.collection, ids=ids, output_fields=["embedding"])
        by_id = {int(row["id"]): row["embedding"] for row in found}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise KeyError(missing[0])
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def search(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        where: SongFilter | None = None,
        exclude_song: int | None = None,
    ) -> list[list[Neighbour]]:
        """The k nearest songs to each query vector (nearest first) that pass the filter."""
        if not 1 <= k <= MAX_TOPK:
            raise ValueError(f"k must be between 1 and {MAX_TOPK} on Milvus, got {k}")
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        where = where or SongFilter()
        expression = _expression(where, exclude_song)
        found: list[list[Neighbour]] = []
        for start in range(0, len(queries), _QUERIES_PER_SEARCH):
            chunk = queries[start : start + _QUERIES_PER_SEARCH]
            if where.near is None:
                hits = self._search(chunk, k=k, expression=expression)
                found.extend([Neighbour(h["id"], h["distance"]) for h in qh] for qh in hits)
            else:
                found.extend(self._search_near(chunk, k=k, expression=expression, near=where.near))
        return found

    # --- searching ---------------------------------------------------------------------------

    def _search(
        self, queries: np.ndarray, *, k: int, expression: str, fields: tuple[str, ...] = ()
    ) -> list[list[dict]]:
        """Milvus's hits per query: dicts with id, distance (L2, not squared) and `fields`."""
        hits = self._client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            filter=expression,
            output_fields=["id", *fields],
            search_params={"metric_type": "L2"},
        )
        return [
            [
                # Milvus reports squared L2, like FAISS: the index's distance is L2.
                {**hit["entity"], "id": int(hit["id"]), "distance": _l2(hit["distance"])}
                for hit in query_hits
            ]
            for query_hits in hits
        ]

    def _search_near(
        self, queries: np.ndarray, *, k: int, expression: str, near: Near
    ) -> list[list[Neighbour]]:
        """Box pre-filter in Milvus, exact circle here; exact ids for queries left short."""
        box = _join(expression, _box_expression(near))
        limit = min(MAX_TOPK, k * self._near_overfetch)
        hits = self._search(queries, k=limit, expression=box, fields=("latitude", "longitude"))
        found: list[list[Neighbour]] = []
        short: list[int] = []  # queries whose box held more candidates than were fetched
        for n, query_hits in enumerate(hits):
            inside = _inside(near, query_hits)[:k]
            found.append([Neighbour(h["id"], h["distance"]) for h in inside])
            if len(inside) < k and len(query_hits) == limit:
                short.append(n)
        if short:
            allowed = self._ids_within(near, box)
            for n, neighbours in zip(
                short, self._search_ids(queries[short], k, allowed, expression), strict=True
            ):
                found[n] = neighbours
        return found

    def _ids_within(self, near: Near, box: str) -> np.ndarray:
        """Ids of every song in the box that lies inside the circle."""
        ids, lats, lons = [], [], []
        iterator = self._client.query_iterator(
            self.collection, batch_size=10_000, filter=box, output_fields=["latitude", "longitude"]
        )
        try:
            while batch := iterator.next():
                ids += [row["id"] for row in batch]
                lats += [row["latitude"] for row in batch]
                lons += [row["longitude"] for row in batch]
        finally:
            iterator.close()
        km = haversine_km(near.latitude, near.longitude, np.array(lats), np.array(lons))
        return np.asarray(ids, dtype=np.int64)[km <= near.radius_km]

    def _search_ids(
        self, queries: np.ndarray, k: int, allowed: np.ndarray, expression: str
    ) -> list[list[Neighbour]]:
        """The k nearest among allowed ids: each chunk of ids searched, the hits merged."""
        merged: list[list[dict]] = [[] for _ in range(len(queries))]
        for start in range(0, len(allowed), _IDS_PER_EXPRESSION):
            chunk = allowed[start : start + _IDS_PER_EXPRESSION]
            members = f"id in [{', '.join(str(int(i)) for i in chunk)}]"
            for n, hits in enumerate(
                self._search(queries, k=k, expression=_join(expression, members))
            ):
                merged[n] += hits
        return [
            [Neighbour(h["id"], h["distance"]) for h in sorted(hits, key=_by_distance)[:k]]
            for hits in merged
        ]

    def _present_ids(self, ids: np.ndarray) -> set[int]:
        present: set[int] = set()
        for start in range(0, len(ids), _IDS_PER_EXPRESSION):
            chunk = [int(i) for i in ids[start : start + _IDS_PER_EXPRESSION]]
            present.update(
                int(row["id"])
                for row in self._client.get(self.collection, ids=chunk, output_fields=["id"])
            )
        return present


# --- expressions and rows ----------------------------------------------------------------------


def _expression(where: SongFilter, exclude_song: int | None) -> str:
    """Milvus's filter for everything but "near": "" when all songs may be returned."""
    terms = []
    if exclude_song is not None:
        terms.append(f"id != {int(exclude_song)}")
    if where.exclude_artist is not None:
        terms.append(f"artist_id != {int(where.exclude_artist)}")
    if where.genre is not None:
        # A JSON string literal is a Milvus string literal: quotes and backslashes escaped.
        terms.append(f"genre == {json.dumps(where.genre, ensure_ascii=False)}")
    return " and ".join(terms)


def _box_expression(near: Near) -> str:
    """Latitude/longitude bounds containing every point within radius_km of near."""
    angle = near.radius_km / EARTH_RADIUS_KM  # radians of arc
    dlat = math.degrees(angle) + _BOX_MARGIN_DEGREES
    south, north = near.latitude - dlat, near.latitude + dlat
    terms = [f"latitude >= {south!r}", f"latitude <= {north!r}"]
    cos_lat = math.cos(math.radians(near.latitude))
    # Past a pole, or wide enough to span every meridian: any longitude can be in range.
    if north >= 90 or south <= -90 or angle >= math.pi / 2 or math.sin(angle) >= cos_lat:
        return " and ".join(terms)
    dlon = math.degrees(math.asin(math.sin(angle) / cos_lat)) + _BOX_MARGIN_DEGREES
    west, east = near.longitude - dlon, near.longitude + dlon
    if west < -180:  # the box crosses the antimeridian: two ranges
        terms.append(f"(longitude >= {west + 360!r} or longitude <= {east!r})")
    elif east > 180:
        terms.append(f"(longitude >= {west!r} or longitude <= {east - 360!r})")
    else:
        terms += [f"longitude >= {west!r}", f"longitude <= {east!r}"]
    return " and ".join(terms)


def _join(*expressions: str) -> str:
    return " and ".join(f"({e})" for e in expressions if e)


def _inside(near: Near, hits: list[dict]) -> list[dict]:
    """The hits whose artist lies within the circle, by the FAISS backend's haversine."""
    lats = np.array([np.nan if h["latitude"] is None else h["latitude"] for h in hits])
    lons = np.array([np.nan if h["longitude"] is None else h["longitude"] for h in hits])
    km = np.nan_to_num(haversine_km(near.latitude, near.longitude, lats, lons), nan=np.inf)
    return [h for h, d in zip(hits, km, strict=True) if d <= near.radius_km]


def _l2(squared: float) -> float:
    return float(np.sqrt(max(float(squared), 0.0)))


def _by_distance(hit: dict) -> tuple[float, int]:
    return hit["distance"], hit["id"]


def _records(rows: SongRows, vectors: np.ndarray, part: slice) -> Iterator[dict]:
    for song_id, artist_id, genre, lat, lon, vector in zip(
        *(column[part] for column in rows.columns()), vectors[part], strict=True
    ):
        yield {
            "id": int(song_id),
            "embedding": vector.tolist(),
            "artist_id": int(artist_id),
            "genre": None if genre is None else str(genre),
            "latitude": None if np.isnan(lat) else float(lat),
            "longitude": None if np.isnan(lon) else float(lon),
        }
