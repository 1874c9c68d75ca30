"""Bounded fuzzing of every API operation against a live server with a token (issue 14,
item 6): schemathesis generates valid and invalid requests from ``/openapi.json`` (examples,
coverage and fuzzing phases); every answer must be no 5xx and must conform to the schema
(status documented, content type, headers, body), on SQLite and on PostgreSQL (where it
found run ids above PostgreSQL's 32-bit integer answered 500). About a minute per database.

The larger adversarial pass (tens of thousands of cases, hostile files, kills mid-stream)
and its figures are in docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")  # the `test` extra installs it

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emaboard_server.app.core.config import Settings  # noqa: E402
from emaboard_server.app.main import create_app  # noqa: E402
from emaboard_server.local_server import LocalServer  # noqa: E402
from tests.backend.conftest import TOKEN  # noqa: E402
from tests.backend.utils import safetensors_bytes  # noqa: E402
from tests.utils.databases import DATABASES, server_env  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
SEEDED_RUNS = 3  # ids 1..3, each with snapshots 1..3 spread over them
MAX_EXAMPLES = 30  # per operation and phase: ~15 operations, about a minute in all
STATUSES: dict[str, list[int]] = {}  # per server: every answer's status, for the check at the end


@pytest.fixture(scope="module", params=DATABASES)
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalServer]:
    with server_env(request, request.param) as env, LocalServer(
        tmp_path_factory.mktemp("fuzz") / "data", token=TOKEN, env=env
    ) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
            for n in range(1, SEEDED_RUNS + 1):
                client.post("/api/runs", json={"project": "fuzz", "name": f"r{n}"})
                client.post(f"/api/runs/{n}/metrics", json={"points": [
                    {"key": "eval/ema_0.999/accuracy", "step": s, "value": s / 10}
                    for s in range(5)]})
                client.post(f"/api/runs/{n}/snapshots",
                            data={"averager": "ema_0.999", "step": "1", "value": "0.5",
                                  "metric": "accuracy"},
                            files={"file": ("s", safetensors_bytes(scale=float(n)))})
        yield server


# The schema a server with a token serves (the same app code; no database is touched).
schema = schemathesis.openapi.from_dict(create_app(Settings(
    data_dir=Path("unused"), database_url="sqlite://", token=TOKEN)).openapi())


def _point_at_seeded_data(case: Any) -> None:
    """Valid ids point at the seeded runs and snapshots, so that most cases reach the
    handlers instead of a 404 (deletions keep their random ids: the seed must survive)."""
    ids = case.path_parameters or {}
    if case.method.upper() == "DELETE":
        return
    for name in ("run_id", "snapshot_id"):
        if isinstance(ids.get(name), int) and ids[name] >= 0:
            ids[name] = ids[name] % SEEDED_RUNS + 1


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_answer_conforms(case: Any, fuzz_server: LocalServer) -> None:
    _point_at_seeded_data(case)
    response = case.call(base_url=fuzz_server.url, headers=fuzz_server.headers, timeout=30)
    STATUSES.setdefault(fuzz_server.url, []).append(response.status_code)
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzing_reached_the_handlers(fuzz_server: LocalServer) -> None:
    # Runs after the parametrized test (same module, file order): enough cases were sent,
    # and many of them were accepted, not only refused by validation.
    statuses = STATUSES[fuzz_server.url]
    assert len(statuses) >= 15 * MAX_EXAMPLES, len(statuses)
    assert sum(200 <= status < 300 for status in statuses) >= len(statuses) // 10, \
        sorted(set(statuses))
    assert "Traceback" not in fuzz_server.output()
    assert "unhandled error" not in fuzz_server.output()
    assert Path(fuzz_server.data_dir).is_dir()
