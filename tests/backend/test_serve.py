from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emaboard_server.local_server import free_port
from emaboard_server.serve import add_parser, settings_from_args
from tests.utils.mounts import read_only_mount


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMABOARD_PORT", "9000")
    monkeypatch.setenv("EMABOARD_HOST", "0.0.0.0")
    monkeypatch.setenv("EMABOARD_TOKEN", "from-env")
    args = parse(["--port", "9100", "--data-dir", str(tmp_path), "--database-url", "sqlite://"])
    settings = settings_from_args(args)
    assert (settings.port, settings.host, settings.token) == (9100, "0.0.0.0", "from-env")
    assert settings.data_dir == tmp_path and settings.database_url == "sqlite://"


def test_without_flags_the_environment_and_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMABOARD_HOST", raising=False)
    monkeypatch.setenv("EMABOARD_PORT", "9001")
    settings = settings_from_args(parse([]))
    assert (settings.host, settings.port) == ("127.0.0.1", 9001)


def test_bad_port_flag_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        parse(["--port", "eighty"])


def serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``emaboard serve`` that is expected to fail at start (it would serve otherwise)."""
    return subprocess.run([sys.executable, "-m", "emaboard_server", "serve", *argv],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 1, result
    assert "serving" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emaboard serve: error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_unreachable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/emaboard"
    result = serve("--port", "0", "--data-dir", str(tmp_path), "--database-url", url)
    assert_one_line_error(result, "postgresql+psycopg://user:***@127.0.0.1:", "Connection refused",
                          "Check that PostgreSQL is running")
    assert "secret" not in result.stderr


def test_missing_postgresql_database_is_one_line(tmp_path: Path, postgres_cluster: Any) -> None:
    result = serve("--port", "0", "--data-dir", str(tmp_path),
                   "--database-url", postgres_cluster.url("no_such_db"))
    assert_one_line_error(result, 'database "no_such_db" does not exist', "names an existing")


def test_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--port", str(port), "--data-dir", str(tmp_path))
    assert_one_line_error(result, f"Cannot listen on 127.0.0.1:{port}: Address already in use",
                          "pass --port with a free port")


def test_data_dir_that_cannot_be_written_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = serve("--port", "0", "--data-dir", str(tmp_path / "a-file" / "data"))
    assert_one_line_error(result, f"Cannot write to the data directory {tmp_path}/a-file/data: "
                          "Not a directory", "--data-dir")


def test_read_only_data_dir_is_one_line_naming_it(tmp_path: Path) -> None:
    with read_only_mount(tmp_path / "ro") as folder:
        result = serve("--port", "0", "--data-dir", str(folder / "data"))
    assert_one_line_error(result, f"{folder}/data: Read-only file system")


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    result = serve("--port", "0", "--data-dir", str(tmp_path), "--workers", "2")
    assert_one_line_error(result, "--workers 2 needs PostgreSQL", "--database-url postgresql://")


def test_bad_setting_from_the_environment_is_one_line() -> None:
    result = serve(env={"EMABOARD_PORT": "eighty"})
    assert_one_line_error(result, "Invalid setting port (--port or EMABOARD_PORT)")
