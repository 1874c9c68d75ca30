"""Local run directories: one per training, named injectively, always inside EMABOARD_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ema_core._run_dir import dir_name, new_run_dir, open_spool
from ema_core.client import Monitor, default_run_dir
from emaboard_server.local_server import free_port

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


def _offline(project: str, run: str, **kwargs: object) -> Monitor:
    return Monitor(project, run, f"http://127.0.0.1:{free_port()}",
                   **{**FAST, **kwargs})  # type: ignore[arg-type]


def test_all_non_ascii_names_get_their_own_directories(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path))
    first = _offline("实验", "resnet")
    second = _offline("测试", "resnet")  # raised "belongs to run 实验/resnet" (both were '_')
    assert first.run_dir != second.run_dir
    assert first.run_dir == tmp_path.resolve() / "runs" / "%E5%AE%9E%E9%AA%8C" / "resnet"
    for mon in (first, second):
        mon.finish(timeout_s=0.2)


def test_dot_dot_names_stay_inside_emaboard_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    monkeypatch.setenv("EMABOARD_DIR", str(root))
    mon = _offline("..", "..")  # wrote the spool to <root>/runs/../.. = tmp_path before
    assert mon.run_dir == root.resolve() / "runs" / "%2E." / "%2E."
    assert mon.spool is not None and mon.spool.path.is_relative_to(root.resolve() / "runs")
    mon.finish(timeout_s=0.2)
    assert not (tmp_path / "spool.sqlite").exists()


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=200), st.text(min_size=1, max_size=200))
def test_dir_name_is_injective_and_one_contained_component(a: str, b: str) -> None:
    for name in (a, b):
        encoded = dir_name(name)
        assert encoded not in ("", ".", "..") and "/" not in encoded and "\\" not in encoded
        assert "\x00" not in encoded and not encoded.startswith(".")
        assert len(encoded.encode()) <= 120
    if a != b:
        assert dir_name(a) != dir_name(b)


def test_long_names_are_cut_and_hashed() -> None:
    long_a, long_b = "实" * 200, "实" * 199 + "验"
    assert len(dir_name(long_a)) == 117 and dir_name(long_a)[100] == "~"
    assert dir_name(long_a) != dir_name(long_b)
    assert dir_name("a%41") == "a%2541" and dir_name("aA") == "aA"  # '%' itself is escaped


def test_each_new_training_gets_its_own_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path))
    base = default_run_dir("p", "r")
    dirs = [new_run_dir(base) for _ in range(3)]
    assert dirs == [base, base.with_name("r+2"), base.with_name("r+3")]
    assert all(d.is_dir() for d in dirs)


def test_an_explicit_run_dir_with_an_earlier_training_needs_resume(tmp_path: Path) -> None:
    open_spool(tmp_path, "p", "r", "{}", "never").close()
    with pytest.raises(ValueError, match=r"holds an earlier training of p/r: pass "
                                         r"resume='allow' to continue it, or another run_dir"):
        open_spool(tmp_path, "p", "r", "{}", "never")
    spool = open_spool(tmp_path, "p", "r", "{}", "allow")
    assert spool.meta()["resume"] == "allow"
    spool.close()
    with pytest.raises(ValueError, match="belongs to run p/r: pass another run_dir"):
        open_spool(tmp_path, "p", "other", "{}", "allow")
