"""The server's shape (docs STYLE): imports without cycles, routes that neither query the
database nor touch files themselves, one place that maps domain errors to HTTP."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import emaboard_server
from ema_core.exceptions import InvalidDecayError
from emaboard_server.app.api.errors import DOMAIN_ERRORS, domain_error_response
from emaboard_server.app.exceptions import (
    InvalidPosthocUpload,
    NoPosthocSnapshots,
    PosthocUnavailable,
    RunNotFound,
    SnapshotNotFound,
)
from emaboard_server.app.schemas import ObjectTooLarge
from emaboard_server.app.snapshot_files import InvalidSnapshot, SnapshotTooLarge

PACKAGE = Path(emaboard_server.__file__).parent
ROUTES = PACKAGE / "app" / "api" / "routes"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def server_imports() -> dict[str, set[str]]:
    """Module -> the emaboard_server modules it imports anywhere (function bodies and
    TYPE_CHECKING blocks included: a cycle hidden in either is still a cycle)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "alembic" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # "from pkg import module" names a module
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_server_has_no_import_cycles() -> None:
    graph = server_imports()
    assert "emaboard_server.app.state" in graph and graph["emaboard_server.app.state"]
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in visiting:
            cycles.append(visiting[visiting.index(module):] + [module])
            return
        if module in done:
            return
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert cycles == []


FORBIDDEN_IN_ROUTES = {
    "SQL": re.compile(r"\bsqlalchemy\b|session\.(get|execute|scalars?|add|delete|flush)\(|"
                      r"\bselect\(|\.connection\(\)\.execute"),
    "file I/O": re.compile(r"\bopen\(|\.unlink\(|\.rmdir\(|\.is_file\(|\.exists\(|"
                           r"\.read_(bytes|text)\(|\.write_(bytes|text)\(|\bshutil\b"),
    "None check for a run": re.compile(r"get_run\(.*\)\s*$|is None:\s*\n\s*raise not_found",
                                       re.M),
}


@pytest.mark.parametrize("route", sorted(p.name for p in ROUTES.glob("*.py")))
def test_route_modules_do_no_sql_or_file_io_of_their_own(route: str) -> None:
    source = (ROUTES / route).read_text()
    found = {what: pattern.findall(source) for what, pattern in FORBIDDEN_IN_ROUTES.items()}
    assert {what: hits for what, hits in found.items() if hits} == {}


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (RunNotFound(), 404, "Run not found"),
        (SnapshotNotFound(), 404, "Snapshot not found"),
        (InvalidSnapshot("bad header"), 400, "File is not a valid safetensors file: bad header"),
        (SnapshotTooLarge("too big"), 413, "Upload too large: too big"),
        (NoPosthocSnapshots(), 404, "No post-hoc EMA snapshots in this run"),
        (PosthocUnavailable("a file is gone"), 409,
         "Cannot rebuild from the stored snapshots: a file is gone"),
        (InvalidPosthocUpload("Invalid post-hoc snapshot: x"), 400,
         "Invalid post-hoc snapshot: x"),
        (InvalidDecayError("Invalid sigma_rel 0.3: y"), 422, "Invalid sigma_rel 0.3: y"),
        (ObjectTooLarge("config", 9, 8), 422,
         "Invalid field 'config': 9 bytes of JSON, over max_object_bytes 8; keep it to "
         "hyperparameters and short results"),
    ],
)
def test_domain_errors_map_to_one_status_and_message(
    error: Exception, status: int, message: str
) -> None:
    response = domain_error_response(error)
    assert response.status_code == status
    assert response.body == (
        f'{{"error":{{"status":{status},"message":"{message}"}}}}'.encode()
    )


def test_a_non_domain_error_is_not_mapped() -> None:
    assert ValueError not in DOMAIN_ERRORS
    with pytest.raises(TypeError, match="ValueError is not a domain error"):
        domain_error_response(ValueError("x"))
