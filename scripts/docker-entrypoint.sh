#!/bin/sh
# The container's entrypoint (Dockerfile). One argument says what to do:
#   all      prepare, then serve (the default: one container on SQLite)
#   prepare  build the demo catalogue and train the default model if absent, import the
#            catalogue into MUSICSIM_DATABASE_URL (idempotent), and exit
#   serve    serve the API on 0.0.0.0:MUSICSIM_PORT (replicas: one `prepare` runs first)
set -eu
data=${MUSICSIM_DEMO_DATA:-data/demo}
model=${MUSICSIM_MODEL_DIR:-models/default}
port=${MUSICSIM_PORT:-8000}

prepare() {
  if [ ! -f "$data/features.csv" ]; then
    musicsim demo-data --out "$data"
  fi
  if [ ! -f "$model/manifest.json" ]; then
    musicsim train --data "$data" --triplets random --out "$model"
  fi
  musicsim import --data "$data"
}

serve() {
  exec musicsim serve --host 0.0.0.0 --port "$port" --model "$model"
}

case "${1:-all}" in
  all) prepare && serve ;;
  prepare) prepare ;;
  serve) serve ;;
  *)
    echo "unknown command '$1': use all, prepare or serve" >&2
    exit 2
    ;;
esac
