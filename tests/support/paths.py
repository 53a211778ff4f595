"""Where tests find the checkout and the real audio clips.

The clips live in shared/data/audio beside the checkout (MUSICSIM_TEST_AUDIO_DIR
names another folder). A test that needs them fails, naming the folder, when they
are absent: a silent skip would let a run without them pass as a full one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUDIO_DIR = Path(os.environ.get("MUSICSIM_TEST_AUDIO_DIR") or ROOT.parent / "shared/data/audio")


def real_clips(minimum: int = 1) -> list[Path]:
    """The real .ogg clips, or a test failure naming the folder where they were looked for."""
    clips = sorted(AUDIO_DIR.glob("*.ogg")) if AUDIO_DIR.is_dir() else []
    if len(clips) < minimum:
        pytest.fail(
            f"need at least {minimum} real .ogg clips in {AUDIO_DIR}, found {len(clips)}: "
            "put shared/ beside the checkout or set MUSICSIM_TEST_AUDIO_DIR",
            pytrace=False,
        )
    return clips


def real_clip(name: str) -> Path:
    """One real clip by file name (see `real_clips`)."""
    path = AUDIO_DIR / name
    if not path.is_file():
        real_clips()  # fails naming the folder when there are none at all
        pytest.fail(f"the real clip {path} is missing", pytrace=False)
    return path
