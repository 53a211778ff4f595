# musicsim's service image: CPU-only torch, runs as a non-root user.
#
#   docker build -t musicsim .
#   docker run -p 8000:8000 -v musicsim-data:/data musicsim          # demo data on first run
#   docker run ... musicsim serve                                     # serve only
#
# The image holds the code; the catalogue, model and SQLite database live on /data
# (a volume). The entrypoint (scripts/docker-entrypoint.sh) builds the demo catalogue
# and trains the default model there on the first run, imports it, then serves.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/musicsim
# torch first, from PyTorch's CPU index: PyPI's default torch wheel pulls CUDA (GBs).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY training ./training
COPY migrations ./migrations
COPY scripts/docker-entrypoint.sh ./scripts/docker-entrypoint.sh
# Editable: app/db.py finds migrations/ beside the app package.
RUN pip install -e . \
    && useradd --create-home --uid 10001 --user-group musicsim \
    && mkdir -p /data \
    && chown musicsim:musicsim /data

ENV MUSICSIM_DATABASE_URL=sqlite:////data/musicsim.db \
    MUSICSIM_MODEL_DIR=/data/models/default \
    MUSICSIM_DEMO_DATA=/data/demo \
    MUSICSIM_PORT=8000

USER musicsim
VOLUME ["/data"]
EXPOSE 8000
# The first run trains the demo model before serving: allow it a long start period.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["/opt/musicsim/scripts/docker-entrypoint.sh"]
CMD ["all"]
