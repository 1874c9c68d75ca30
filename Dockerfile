# emaboard images, two targets of one Dockerfile:
#   server  - `emaboard serve`, without torch (the server never imports it)
#   trainer - the demo trainer: the CPU torch wheel and emaboard[demo]
#   docker compose up --build          # PostgreSQL, the server on :8000, then the demo streams a run
FROM python:3.11-slim AS common

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --create-home --uid 1000 emaboard && mkdir -p /data && chown emaboard:emaboard /data
WORKDIR /app


FROM common AS trainer
# The CPU wheel first, in its own layer: any other torch request would pull a multi-GB
# CUDA build, and this layer stays cached while the project's code changes.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY ema_core ./ema_core
COPY backend ./backend
COPY frontend ./frontend
RUN pip install ".[demo]"
USER emaboard
WORKDIR /home/emaboard
CMD ["emaboard", "demo", "--no-serve", "--server", "http://server:8000"]


FROM common AS server
COPY pyproject.toml README.md ./
COPY ema_core ./ema_core
COPY backend ./backend
COPY frontend ./frontend
# emaboard without its training-side dependencies (torch), then exactly the `server` extra
# and the `postgres` extra's driver (psycopg 3; the compose file stores into PostgreSQL).
RUN python -c "import tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(extras['server'] + [r for r in extras['postgres'] if not r.startswith('emaboard')]))" > /tmp/server-requirements.txt \
    && pip install --no-deps . && pip install -r /tmp/server-requirements.txt

# Inside the container the server must listen on every interface to be reachable.
ENV EMABOARD_HOST=0.0.0.0 \
    EMABOARD_PORT=8000 \
    EMABOARD_DATA_DIR=/data

USER emaboard
WORKDIR /home/emaboard
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=12 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=3).status != 200)"]

CMD ["emaboard", "serve"]
