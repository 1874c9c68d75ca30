from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emaboard_server.local_server import LocalServer


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A real emaboard server (uvicorn subprocess) on a free loopback port, its own data_dir."""
    with LocalServer(data_dir=tmp_path / "server-data") as server:
        yield server
