"""One real server per integration test module (each test uses its own run names)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.utils.server import ServerProcess


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("server-data")) as server:
        yield server
