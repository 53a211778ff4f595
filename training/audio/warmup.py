"""Run the feature recipe once, so the first real upload does not pay for compiling it.

librosa's first call imports its submodules and numba compiles its kernels (11-16 s
on a busy two-core machine); later calls reuse them within the process. A server
calls `warm_up_recipe` in a background thread at start-up, and a pool of analysis
processes can call it from each process's initializer.

    >>> warm_up_recipe()          # False, without error, when the audio extra is absent
    True
"""

from __future__ import annotations

import io
import logging
import threading
import time

import numpy as np

from training.extras import MissingExtra

log = logging.getLogger("musicsim.audio")
WARM_UP_SR = 22_050
WARM_UP_SECONDS = 3.0  # long enough for every frame-wise series and the CQT


def warm_up_recipe() -> bool:
    """Decode and analyse a short synthetic tone; True when done, False without the extra."""
    try:
        from training.audio.recipe import decode, extract_features, sf
    except MissingExtra:
        return False
    started = time.perf_counter()
    t = np.arange(int(WARM_UP_SR * WARM_UP_SECONDS)) / WARM_UP_SR
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )
    wav = io.BytesIO()
    sf.write(wav, tone, WARM_UP_SR, format="WAV")  # through decode too: the upload path
    signal, sr = decode(wav.getvalue(), excerpt_seconds=None)
    extract_features(signal=signal, sr=sr)
    log.info("audio feature recipe warmed up in %.1f s", time.perf_counter() - started)
    return True


def warm_up_in_background() -> threading.Thread:
    """Start `warm_up_recipe` in a daemon thread (start-up does not wait for it)."""

    def run() -> None:
        try:
            warm_up_recipe()
        except Exception:  # a failed warm-up costs only speed: the upload will say what fails
            log.warning("audio warm-up failed; the first upload compiles instead", exc_info=True)

    thread = threading.Thread(target=run, name="audio-warm-up", daemon=True)
    thread.start()
    return thread
