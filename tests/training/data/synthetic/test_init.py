"""The package itself stays light: `musicsim --help` reads its defaults without numpy."""

from __future__ import annotations

import json
import subprocess
import sys

from paths import ROOT


def _modules_loaded_by(statement: str) -> dict[str, object]:
    """Import in a fresh interpreter (so nothing was loaded before) and report what came along."""
    script = (
        f"import json, sys\n{statement}\n"
        "import training.data.synthetic as package\n"
        "print(json.dumps({'numpy': 'numpy' in sys.modules, 'pandas': 'pandas' in sys.modules,"
        " 'file': package.__file__}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_importing_the_package_loads_neither_numpy_nor_pandas():
    loaded = _modules_loaded_by("from training.data.synthetic import DEFAULT_ARTISTS")
    assert str(ROOT) in loaded["file"]  # this checkout's package, not an installed copy
    assert loaded["numpy"] is False
    assert loaded["pandas"] is False


def test_the_generator_itself_does_load_numpy_and_pandas():
    # The control for the test above: the same probe sees them when they are imported.
    loaded = _modules_loaded_by("import training.data.synthetic.catalogue")
    assert loaded["numpy"] is True
    assert loaded["pandas"] is True
