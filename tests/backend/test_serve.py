from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from emaboard_server.serve import add_parser, settings_from_args


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
