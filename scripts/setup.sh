#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs musicsim with every extra and its dev tools.
# Idempotent: re-installs only when pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in "${PYTHON:-}" python3.11 python3 python; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "musicsim needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.musicsim-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first, pinned: 2.13.0 is the CPU wheel; an unpinned resolve can pull a CUDA build.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[all,dev]"
  echo "$want" > "$stamp"
fi
# librosa's numba kernels, compiled and cached once here, by one process: processes that
# compile them at the same moment (test workers, a server's audio workers) can leave a
# cache that crashes the next process loading it (a fresh clone's tests segfaulted so).
compiled=.venv/.musicsim-audio-compiled
if [ "$(cat "$compiled" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -c "from training.audio.warmup import warm_up_recipe; warm_up_recipe()"
  echo "$want" > "$compiled"
fi
