"""The song catalogue in the database: the only code that writes songs.

- `importing`: FMA-format files -> rows (idempotent upserts by track id)
- `reads`: look-ups for routes, the index's start-up and the follower
- `writes`: cold-start songs added at run time
- `rows`: `SongRows`, the attributes of songs that the index filters on
"""


class CatalogueError(ValueError):
    """A request names something the catalogue cannot accept; the message says what."""
