"""App assembly: dashboard static files, vendored Plotly, health."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from emaboard_server.app.compression import plotly_js
from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app, frontend_dir


def test_health(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["version"].count(".") == 2


def test_plotly_is_served_from_the_vendored_bundle(client: TestClient) -> None:
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == plotly_js().read_bytes()
    assert plotly_js() == frontend_dir() / "vendor" / "plotly-scatter-heatmap.min.js"
    assert response.content.startswith(b"/**\n* plotly.js (scatter + heatmap - minified) v4.1.1")


def test_dashboard_index_is_served_at_root(client: TestClient) -> None:
    index = frontend_dir() / "index.html"
    response = client.get("/")
    if index.is_file():
        assert response.status_code == 200 and response.content == index.read_bytes()
    else:
        assert response.status_code == 404


def test_frontend_dir_is_the_repo_folder_outside_a_wheel() -> None:
    assert frontend_dir() == Path(__file__).resolve().parents[2] / "frontend"


def test_startup_freezes_its_objects_and_checkpoints_sqlite_in_a_thread(tmp_path: Path) -> None:
    gc.unfreeze()
    app = create_app(Settings(data_dir=tmp_path / "data", token=None))
    with TestClient(app):
        # What startup built lives as long as the server: kept out of the collector's walks.
        assert gc.get_freeze_count() > 0
        assert "wal-checkpoint" in {thread.name for thread in threading.enumerate()}
    assert "wal-checkpoint" not in {thread.name for thread in threading.enumerate()}
    gc.unfreeze()


def test_the_send_interval_setting_reaches_every_websocket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMABOARD_WS_SEND_INTERVAL_MS", "200")
    app = create_app(Settings(data_dir=tmp_path / "data", token=None))
    hub = app.state.emaboard.hub
    assert hub.send_interval_s == 0.2
    assert hub.subscribe(1, lambda text: asyncio.sleep(0)).send_interval_s == 0.2
    monkeypatch.setenv("EMABOARD_WS_SEND_INTERVAL_MS", "-1")
    with pytest.raises(ValidationError, match="ws_send_interval_ms"):
        Settings(data_dir=tmp_path / "data")
