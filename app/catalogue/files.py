"""Where a library song's audio file is, and whether it may be served.

>>> path = song_file(file_path="Artist/Album/01.flac", root=Path("/music"))   # or None

A song stores its file relative to its library's root. A path is served only when
it names a regular file that is inside the root after every symlink is followed:
absolute paths, `..` parts and links that lead out of the root are refused (None),
so the database can never be used to read an arbitrary file.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

# Content types of the audio files musicsim analyses (training.audio.recipe).
AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".mp3": "audio/mpeg",
}


def song_file(*, file_path: str | None, root: Path | str | None) -> Path | None:
    """The file to serve, or None when there is none or it lies outside the root."""
    if not file_path or root is None or "\x00" in file_path:
        return None
    relative = PurePosixPath(file_path)
    if relative.is_absolute() or Path(file_path).is_absolute() or ".." in relative.parts:
        return None
    try:
        real_root = Path(os.path.realpath(root))
        real_file = Path(os.path.realpath(real_root.joinpath(*relative.parts)))
    except (OSError, ValueError):
        return None
    if not real_file.is_relative_to(real_root) or not real_file.is_file():
        return None
    return real_file


def audio_type(path: Path) -> str:
    return AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")
