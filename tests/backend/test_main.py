"""App assembly: dashboard static files, vendored Plotly, health."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from emaboard_server.app.compression import plotly_js
from emaboard_server.app.main import frontend_dir


def test_health(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["version"].count(".") == 2


def test_plotly_is_served_from_the_installed_package(client: TestClient) -> None:
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == plotly_js().read_bytes()


def test_dashboard_index_is_served_at_root(client: TestClient) -> None:
    index = frontend_dir() / "index.html"
    response = client.get("/")
    if index.is_file():
        assert response.status_code == 200 and response.content == index.read_bytes()
    else:
        assert response.status_code == 404


def test_frontend_dir_is_the_repo_folder_outside_a_wheel() -> None:
    assert frontend_dir() == Path(__file__).resolve().parents[2] / "frontend"
