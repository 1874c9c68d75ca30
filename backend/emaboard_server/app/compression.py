"""Compressed responses: gzip for the API and the dashboard, Plotly.js compressed once.

A remote browser gets Plotly.js (scatter and heatmap, 1.1 MB) as 0.4 MB of gzip
and the metric JSON at a fraction of its size.
:class:`~starlette.middleware.gzip.GZipMiddleware` compresses HTTP responses only
(websockets pass through untouched) and leaves alone what is compressed already or must
stay byte-exact: zip and gzip files, images, snapshot downloads
(``application/octet-stream``: safetensors files keep their ``Content-Length``, and
compressing float weights gains little), and responses that set their own
``Content-Encoding`` — as Plotly.js does, compressed at level 9 once per server process
instead of at each request.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from pathlib import Path

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES
from starlette.requests import Request
from starlette.responses import FileResponse, Response

import emaboard_server

GZIP_MINIMUM_BYTES = 1024
GZIP_LEVEL = 6  # ~ level 9's ratio on JSON at a third of the CPU time
GZIP_EXCLUDED_TYPES = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/octet-stream")
CACHE_CONTROL = "public, max-age=86400"


def frontend_dir() -> Path:
    """The dashboard's static files: ``emaboard_server/_frontend`` in a wheel, else
    ``<repo>/frontend`` (the package lives in ``<repo>/backend/emaboard_server``)."""
    package_dir = Path(emaboard_server.__file__).resolve().parent
    packaged = package_dir / "_frontend"
    if packaged.is_dir():
        return packaged
    return package_dir.parent.parent / "frontend"


def plotly_js() -> Path:
    """Plotly.js as the dashboard loads it (no CDN): plotly.js 4.1.1's core and heatmap trace
    (MIT, in ``frontend/vendor/``, built by ``scripts/plotly_bundle/build.sh``), the two trace
    types the dashboard draws (``scatter``, ``heatmap``) in 1.1 MB: Chromium parses and runs
    it in about a third of the time of plotly.js's 1.5 MB ``cartesian`` bundle, a seventh of
    the full 4.8 MB bundle's (docs/benchmarks.md)."""
    return frontend_dir() / "vendor" / "plotly-scatter-heatmap.min.js"


class PrecompressedFile:
    """A static file served gzip-compressed (level 9, compressed once) to clients that accept
    gzip, and as it is to the others, with an ``ETag`` of its content."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.path, self.media_type = path, media_type
        self._lock = threading.Lock()
        self._gzip: bytes | None = None
        self._etag: str | None = None

    def prepare(self) -> None:
        """Compress the file now (the server calls it at start-up, in a worker thread)."""
        with self._lock:
            if self._gzip is None:
                data = self.path.read_bytes()
                self._etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                self._gzip = gzip.compress(data, compresslevel=9, mtime=0)

    def response(self, request: Request) -> Response:
        """The file for this request: gzip when accepted, 304 when the ETag matches."""
        self.prepare()
        assert self._gzip is not None and self._etag is not None
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": self._etag, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == self._etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(self._gzip, media_type=self.media_type,
                            headers={**headers, "Content-Encoding": "gzip"})
        return FileResponse(self.path, media_type=self.media_type, headers=headers)
