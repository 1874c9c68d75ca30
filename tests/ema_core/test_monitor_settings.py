"""A Monitor's settings alone: explicit arguments, the environment, the default."""

from __future__ import annotations

import pytest

from ema_core._monitor_settings import resolve_settings
from ema_core.client import DEFAULT_SERVER


def _resolve(**kwargs: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"project": "p", "run": "r", "server": None, "token": None,
                               "resume": "never", "finish_timeout_s": 1.0,
                               "default_server": DEFAULT_SERVER, **kwargs}
    return resolve_settings(**args)  # type: ignore[arg-type]


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMABOARD_SERVER", "")
    monkeypatch.setenv("EMABOARD_TOKEN", "")
    settings = _resolve()
    assert (settings.server, settings.token) == (DEFAULT_SERVER, None)


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMABOARD_SERVER", "http://env:1")
    monkeypatch.setenv("EMABOARD_TOKEN", "env-token")
    assert (_resolve().server, _resolve().token) == ("http://env:1", "env-token")
    explicit = _resolve(server="http://arg:2", token="arg-token", max_batch_points=7)
    assert (explicit.server, explicit.token) == ("http://arg:2", "arg-token")
    assert explicit.sender.max_batch_points == 7


def test_a_whitespace_name_is_refused_before_anything_else() -> None:
    with pytest.raises(ValueError, match=r"Invalid run '  ': expected a non-empty string of at "
                       r"most 200 characters"):
        _resolve(run="  ", resume="sometimes")
