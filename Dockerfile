# emaboard server (and demo) image: CPU-only torch, the project installed from source.
#   docker compose up --build          # server on :8000, then the demo streams a run into it
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app

# The CPU wheel first, in its own layer: any other torch request would pull a multi-GB
# CUDA build, and this layer stays cached while the project's code changes.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY ema_core ./ema_core
COPY backend ./backend
COPY frontend ./frontend
RUN pip install . && useradd --create-home --uid 1000 emaboard \
    && mkdir -p /data && chown emaboard:emaboard /data

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
