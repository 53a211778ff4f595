"""The warm-up compiles what an upload's analysis needs: the first real one compiles nothing."""

import subprocess
import sys
import textwrap

from paths import ROOT

PROBE = textwrap.dedent(
    """
    import gc, io
    import numpy as np
    from numba.core.dispatcher import Dispatcher

    def compiled():
        total = 0
        for obj in gc.get_objects():
            try:
                if isinstance(obj, Dispatcher):
                    total += len(obj.signatures)
            except ReferenceError:  # dead weak proxies among gc's objects
                pass
        return total

    from training.audio.warmup import warm_up_recipe
    from training.audio.recipe import decode, extract_features, sf

    before = compiled()
    assert warm_up_recipe() is True
    after_warm_up = compiled()
    # A different rate and length than the warm-up's, as a real upload has.
    rng = np.random.default_rng(1)
    music = (0.2 * rng.standard_normal(44_100 * 5)).astype(np.float32)
    wav = io.BytesIO()
    sf.write(wav, music, 44_100, format="WAV")
    signal, sr = decode(wav.getvalue(), excerpt_seconds=30.0)
    extract_features(signal=signal, sr=sr)
    print(before, after_warm_up, compiled())
    """
)


def test_after_the_warm_up_an_upload_analysis_compiles_nothing_new():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    before, warmed, after_upload = map(int, done.stdout.split()[-3:])
    assert warmed > before  # the warm-up did compile numba kernels
    assert after_upload == warmed
