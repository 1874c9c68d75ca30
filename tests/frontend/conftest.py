from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.frontend import node


@pytest.fixture(scope="session", autouse=True)
def node_process() -> Iterator[None]:
    """Stop the session's Node process (started by the first ``call``) at the end."""
    yield
    node.close()
