#!/usr/bin/env bash
# The main job: set up, build the demo catalogue and default model if absent,
# import the catalogue (idempotent) and serve the API on localhost:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
musicsim=.venv/bin/musicsim
data=${MUSICSIM_DEMO_DATA:-data/demo}
model=${MUSICSIM_MODEL_DIR:-models/default}

if [ ! -f "$data/features.csv" ]; then
  "$musicsim" demo-data --out "$data"
fi
if [ ! -f "$model/manifest.json" ]; then
  "$musicsim" train --data "$data" --triplets random --out "$model"
fi
"$musicsim" import --data "$data"
exec "$musicsim" serve --host "${MUSICSIM_HOST:-127.0.0.1}" --port "${MUSICSIM_PORT:-8000}" --model "$model"
