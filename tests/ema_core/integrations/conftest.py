"""One real server per integration test module (each test uses its own run names)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emaboard_server.local_server import LocalServer


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(data_dir=tmp_path_factory.mktemp("server-data")) as server:
        yield server
