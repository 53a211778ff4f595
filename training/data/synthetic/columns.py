"""The 52 columns of FMA's tracks.csv, in the file's order."""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


TRACK_COLUMNS: tuple[tuple[str, str], ...] = (
    *(
        ("album", f)
        for f in _words(
            "comments date_created date_released engineer favorites id information listens "
            "producer tags title tracks type"
        )
    ),
    *(
        ("artist", f)
        for f in _words(
            "active_year_begin active_year_end associated_labels bio comments date_created "
            "favorites id latitude location longitude members name related_projects tags "
            "website wikipedia_page"
        )
    ),
    ("set", "split"),
    ("set", "subset"),
    *(
        ("track", f)
        for f in _words(
            "bit_rate comments composer date_created date_recorded duration favorites "
            "genre_top genres genres_all information interest language_code license listens "
            "lyricist number publisher tags title"
        )
    ),
)
