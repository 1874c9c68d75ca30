"""Compressed responses: gzip for JSON and the dashboard, Plotly.js compressed once, never
for snapshot files or zips, and websockets untouched."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
from fastapi.testclient import TestClient

from emaboard_server.app.compression import plotly_js
from tests.backend.conftest import points
from tests.backend.utils import safetensors_bytes


def raw_get(client: TestClient, url: str, **headers: str) -> httpx.Response:
    """GET without decoding: the body as sent, to see its Content-Encoding and size."""
    with client.stream("GET", url, headers=headers) as response:
        response.read_raw = b"".join(response.iter_raw())  # type: ignore[attr-defined]
        return response


def test_metric_json_is_gzipped(client: TestClient, run: dict[str, Any]) -> None:
    client.post(f"/api/runs/{run['id']}/metrics", json={"points": points("a", range(2000))})
    url = f"/api/runs/{run['id']}/metrics"
    compressed = raw_get(client, url, **{"Accept-Encoding": "gzip"})
    plain = raw_get(client, url, **{"Accept-Encoding": "identity"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed.read_raw) == plain.read_raw  # type: ignore[attr-defined]
    assert len(compressed.read_raw) < len(plain.read_raw) / 5  # type: ignore[attr-defined]


def test_plotly_is_compressed_once_and_cached(client: TestClient) -> None:
    original = plotly_js().read_bytes()
    response = raw_get(client, "/vendor/plotly.min.js", **{"Accept-Encoding": "gzip, br"})
    body = response.read_raw  # type: ignore[attr-defined]
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == original
    assert len(body) < 0.35 * len(original)
    assert response.headers["cache-control"] == "public, max-age=86400"
    again = client.get("/vendor/plotly.min.js",
                       headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    plain = raw_get(client, "/vendor/plotly.min.js", **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.read_raw == original  # type: ignore[attr-defined]


def test_dashboard_modules_are_gzipped(client: TestClient) -> None:
    response = raw_get(client, "/js/run_page.js", **{"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"].startswith("text/javascript")


def test_snapshot_files_are_sent_as_they_are(client: TestClient, run: dict[str, Any]) -> None:
    data = safetensors_bytes()
    snapshot = client.post(f"/api/runs/{run['id']}/snapshots", data={"averager": "swa",
                           "step": "1"}, files={"file": ("f", data)}).json()
    response = raw_get(client, snapshot["download_url"], **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(data))
    assert response.read_raw == data  # type: ignore[attr-defined]


def test_websockets_pass_through(client: TestClient, run: dict[str, Any]) -> None:
    with client.websocket_connect(f"/ws/runs/{run['id']}",
                                  headers={"Accept-Encoding": "gzip"}) as ws:
        assert ws.receive_json()["type"] == "hello"
