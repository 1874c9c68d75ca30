"""docker-compose.yml and the Dockerfile, tested without a Docker engine (none runs here).

``docker-compose config`` (Debian's v1 client) validates and normalises the compose file;
the container commands are then run directly on this machine: the server command with the
compose environment (port and data folder moved to a free port and a temporary folder, the
database URL to a database of the test suite's PostgreSQL cluster), its healthcheck command
against it, PostgreSQL's healthcheck command against the cluster, and the demo command
through the real CLI parser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine

from emaboard_server.cli import build_parser
from emaboard_server.local_server import free_port

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
HEALTH_URL = "http://127.0.0.1:8000/api/health"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as ``docker-compose config`` normalises it."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./scripts/test installs Debian's v1 client)")
    env = {k: v for k, v in os.environ.items() if k != "EMABOARD_DB_PASSWORD"}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


DATABASE_URL = "postgresql://emaboard:emaboard@postgres:5432/emaboard"


def test_services_volume_and_ports(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "server", "demo"}
    assert set(compose["volumes"]) == {"emaboard-data", "postgres-data"}
    server = compose["services"]["server"]
    assert server["build"]["context"] == str(REPO)
    assert server["ports"] == [{"published": 8000, "target": 8000}]
    assert server["volumes"] == ["emaboard-data:/data:rw"]
    assert server["environment"] == {
        "EMABOARD_HOST": "0.0.0.0", "EMABOARD_PORT": "8000", "EMABOARD_DATA_DIR": "/data",
        "EMABOARD_DATABASE_URL": DATABASE_URL, "EMABOARD_WORKERS": "2",
        "EMABOARD_ALLOWED_HOSTS": "localhost,127.0.0.1,::1,server",
    }  # fmt: skip
    assert server["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_postgres_is_the_official_image_with_a_volume_and_a_healthcheck(
    compose: dict[str, Any]
) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"  # Docker's official image
    assert postgres["environment"] == {"POSTGRES_USER": "emaboard", "POSTGRES_DB": "emaboard",
                                       "POSTGRES_PASSWORD": "emaboard"}
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data:rw"]
    assert "ports" not in postgres  # reachable only on compose's network
    check = postgres["healthcheck"]
    assert check["test"] == ["CMD", "pg_isready", "--username=emaboard", "--dbname=emaboard"]
    assert check["interval"] == "5s" and check["retries"] == 12


def test_the_database_password_comes_from_the_environment() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (./scripts/test installs Debian's v1 client)")
    env = {**os.environ, "EMABOARD_DB_PASSWORD": "s3cret"}
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], capture_output=True,
                            text=True, timeout=60, check=True, env=env)
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["server"]["environment"]["EMABOARD_DATABASE_URL"] == (
        "postgresql://emaboard:s3cret@postgres:5432/emaboard")


def test_postgres_healthcheck_command_tells_up_from_down(
    compose: dict[str, Any], postgres_cluster: Any
) -> None:
    # The image runs it on its local socket; here it is pointed at the test cluster.
    command = compose["services"]["postgres"]["healthcheck"]["test"][1:]
    binary = shutil.which("pg_isready") or str(postgres_cluster.bindir / "pg_isready")
    where = ["--host=127.0.0.1", "--username=postgres", "--dbname=postgres"]
    up = subprocess.run([binary, *command[1:], *where, f"--port={postgres_cluster.port}"],
                        capture_output=True, timeout=30, check=False)
    down = subprocess.run([binary, *command[1:], *where, f"--port={free_port()}"],
                          capture_output=True, timeout=30, check=False)
    assert (up.returncode, down.returncode != 0) == (0, True), (up, down)


def test_server_healthcheck_polls_api_health(compose: dict[str, Any]) -> None:
    check = compose["services"]["server"]["healthcheck"]
    assert check["test"][:3] == ["CMD", "python", "-c"]
    assert HEALTH_URL in check["test"][3]
    assert check["interval"] == "5s" and check["retries"] == 12


def test_demo_waits_for_a_healthy_server(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    assert demo["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert demo["image"] == "emaboard-trainer:latest"  # built from the Dockerfile's trainer stage
    assert demo["command"] == [
        "emaboard", "demo", "--no-serve", "--server", "http://server:8000",
    ]  # fmt: skip


def test_demo_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    from emaboard_server.demo import run

    command = compose["services"]["demo"]["command"]
    args = build_parser().parse_args(command[1:])
    assert args.func is run
    assert args.no_serve and args.server == "http://server:8000"


def _emaboard_executable() -> str:
    found = Path(sys.executable).with_name("emaboard")
    if not found.exists():
        pytest.skip(f"no emaboard console script next to {sys.executable}: pip install -e .")
    return str(found)


def test_server_command_and_healthcheck_work_when_run_directly(
    compose: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    server = compose["services"]["server"]
    port = free_port()
    env = {
        **os.environ,
        **server["environment"],
        "EMABOARD_PORT": str(port),
        "EMABOARD_DATA_DIR": str(tmp_path / "data"),
        "EMABOARD_DATABASE_URL": postgres_url,  # the compose value, on this machine's cluster
    }
    command = [_emaboard_executable(), *server["command"][1:]]
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}/api/health", tmp_path / "server.log")
        check = [sys.executable, *server["healthcheck"]["test"][2:]]
        check[-1] = check[-1].replace(":8000/", f":{port}/")
        assert subprocess.run(check, timeout=30, check=False).returncode == 0
        created = httpx.post(f"http://127.0.0.1:{port}/api/runs",
                             json={"project": "compose", "name": "r"}, timeout=10)
        assert created.status_code == 201, created.text
        assert not (tmp_path / "data" / "emaboard.db").exists()  # stored in PostgreSQL
        engine = create_engine(postgres_url)
        with engine.connect() as connection:
            names = connection.exec_driver_sql("SELECT name FROM run").scalars().all()
            # Two processes, each listening: the health check may be answered by the first
            # one up while the second is still starting (seconds on a loaded machine).
            deadline, listening = time.monotonic() + 60, 0
            while listening != 2 and time.monotonic() < deadline:
                time.sleep(0.2)
                listening = connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = "
                    "'emaboard-listen'").scalar()
        engine.dispose()
        assert (names, listening) == (["r"], 2)
        # The names compose uses answer (the demo's server:8000, a browser's localhost:8000);
        # any other name is refused (DNS rebinding).
        url = f"http://127.0.0.1:{port}/api/runs"
        for host, status in (("server", 200), ("localhost", 200), ("evil.example", 400)):
            response = httpx.get(url, headers={"Host": f"{host}:{port}"}, timeout=10)
            assert response.status_code == status, (host, response.text)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    failing = subprocess.run(check, timeout=30, check=False, capture_output=True)
    assert failing.returncode != 0  # the healthcheck fails once the server is gone


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server did not answer {url}:\n{log.read_text()}")


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's instructions by build stage (``FROM … AS name``)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    for op, arg in _dockerfile_instructions():
        if op == "FROM":
            current = stages.setdefault(arg.split()[-1], [])
        current.append((op, arg))
    return stages


def test_dockerfile_matches_the_compose_file(compose: dict[str, Any]) -> None:
    stages = _stages()
    assert stages["common"][0] == ("FROM", "python:3.11-slim AS common")
    assert compose["services"]["server"]["build"]["target"] == "server"
    assert compose["services"]["demo"]["build"]["target"] == "trainer"
    # trainer: the CPU torch wheel before the project, which brings the demo extra
    trainer_runs = [arg for op, arg in stages["trainer"] if op == "RUN"]
    torch_step = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert trainer_runs == [torch_step, 'pip install ".[demo]"']
    # server: no torch anywhere; the project without dependencies, then the server extra
    server_stage = stages["server"]
    (server_run,) = [arg for op, arg in server_stage if op == "RUN"]
    assert "torch" not in server_run
    assert "pip install --no-deps ." in server_run
    assert "['optional-dependencies']" in server_run
    assert "extras['server']" in server_run and "extras['postgres']" in server_run
    env = " ".join(arg for op, arg in server_stage if op == "ENV")
    assert re.search(r"EMABOARD_HOST=0\.0\.0\.0\b", env)
    assert re.search(r"EMABOARD_DATA_DIR=/data\b", env)
    assert ("EXPOSE", "8000") in server_stage
    assert ("CMD", '["emaboard", "serve"]') in server_stage
    server = compose["services"]["server"]
    assert server["command"] == ["emaboard", "serve"]
    (healthcheck,) = [arg for op, arg in server_stage if op == "HEALTHCHECK"]
    assert server["healthcheck"]["test"][3] in healthcheck


def test_server_stage_installs_what_the_server_imports() -> None:
    """The command the server stage runs yields the server extra's requirements and the
    PostgreSQL driver."""
    (server_run,) = [arg for op, arg in _stages()["server"] if op == "RUN"]
    script = server_run.split('python -c "', 1)[1].split('" > ', 1)[0]
    printed = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert any(req.startswith("fastapi") for req in printed)
    assert any(req.startswith("psycopg[binary]") for req in printed)
    assert not any(req.startswith(("torch", "emaboard")) for req in printed)


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "emaboard-data", ".emaboard", "tests"} <= ignored
    for stage in ("server", "trainer"):
        copied = [arg for op, arg in _stages()[stage] if op == "COPY"]
        for source in ("pyproject.toml", "ema_core", "backend", "frontend"):
            assert any(arg.split()[0] == source for arg in copied), (stage, source)
            assert source not in ignored
