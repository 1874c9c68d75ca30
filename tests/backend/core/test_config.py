from __future__ import annotations

import re
from pathlib import Path

import pytest

from emaboard_server.app.core.config import Settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(EMABOARD_\w+)` \|", DOC.read_text(), flags=re.M)
    documented = {name: env for name, env in rows}
    assert set(documented) == set(Settings.model_fields)
    for name, env in documented.items():
        assert env == f"EMABOARD_{name.upper()}"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"EMABOARD_{name.upper()}", raising=False)
    settings = Settings()
    assert (settings.host, settings.port, settings.token) == ("127.0.0.1", 8000, None)
    assert settings.data_dir == Path("./emaboard-data")
    assert (
        settings.resolved_database_url()
        == f"sqlite:///{Path('emaboard-data').resolve() / 'emaboard.db'}"
    )


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMABOARD_TOKEN", "t")
    monkeypatch.setenv("EMABOARD_PORT", "9001")
    monkeypatch.setenv("EMABOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EMABOARD_DATABASE_URL", "sqlite:////elsewhere.db")
    settings = Settings()
    assert (settings.token, settings.port, settings.data_dir) == ("t", 9001, tmp_path)
    assert settings.resolved_database_url() == "sqlite:////elsewhere.db"
    assert Settings(port=1234).port == 1234  # explicit values (CLI flags) beat the environment


def test_invalid_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMABOARD_PORT", "70000")
    with pytest.raises(ValueError, match="Input should be less than or equal to 65535"):
        Settings()


def test_empty_token_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty EMABOARD_TOKEN (env files, compose) must not lock every client out: clients
    # send no Authorization header for an empty token, so auth would refuse them all.
    monkeypatch.setenv("EMABOARD_TOKEN", "")
    assert Settings().token is None
    assert Settings(token="").token is None
