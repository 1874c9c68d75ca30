"""Monitor in a plain PyTorch loop against a real server: points, statistics, eval, snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from ema_core.client import Monitor, default_run_dir
from ema_core.ema import EMA
from ema_core.snapshot import load_snapshot
from ema_core.swap import evaluate_all
from emaboard_server.local_server import LocalServer, free_port
from tests.ema_core.client_utils import eval_fn, find_run, series, tiny_model, train_step

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One real server for this module (each test uses its own run names)."""
    with LocalServer(data_dir=tmp_path_factory.mktemp("server-data")) as server:
        yield server


def _offline(tmp_path: Path, **kwargs: object) -> Monitor:
    """A Monitor whose server is not there (for input checks)."""
    return Monitor("p", "r", f"http://127.0.0.1:{free_port()}", run_dir=tmp_path / "run",
                   **{**FAST, **kwargs})  # type: ignore[arg-type]


def test_plain_loop_streams_scalars_statistics_eval_and_status(
    tmp_path: Path, live_server: LocalServer
) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = EMA(model, decays=(0.9, 0.99))
    mon = Monitor("proj", "plain", live_server.url, config={"lr": 0.1}, run_dir=tmp_path / "r",
                  **FAST)
    mon.watch(ema, stats_every=5)
    losses, stats_by_step, evals, seen = [], {}, {}, None
    for step in range(30):
        losses.append(train_step(model, opt))
        ema.update(model)
        if ema.last_stats is not seen:
            seen = ema.last_stats
            stats_by_step[step] = seen.to_metrics()
        mon.step(step, {"loss": losses[-1]})
        if step % 10 == 9:
            evals[step] = evaluate_all(model, [ema], eval_fn)
            mon.log_eval(step, evals[step])
    mon.log(29, {"lr": 0.1})
    mon.finish()

    run = find_run(live_server.url, "proj", "plain")
    got = series(live_server.url, run["id"])
    assert (run["status"], run["config"], run["id"]) == ("finished", {"lr": 0.1}, mon.run_id)
    assert got["train/loss"]["steps"] == list(range(30))
    assert got["train/loss"]["values"] == losses
    assert got["lr"]["values"] == [0.1]
    assert len(stats_by_step) == 6
    for key in ("weights/norm/live", "weights/drift/ema_0.99", "layer/2/rel_drift/ema_0.9"):
        assert got[key]["steps"] == list(stats_by_step)
        assert got[key]["values"] == [m[key] for m in stats_by_step.values()]
    for model_name in ("live", "ema_0.9", "ema_0.99"):
        assert got[f"eval/{model_name}/accuracy"]["steps"] == [9, 19, 29]
        assert got[f"eval/{model_name}/loss"]["values"] == [
            evals[s][model_name]["loss"] for s in (9, 19, 29)]
    assert mon.sender_stats.points_spooled == 0


def test_best_snapshot_from_the_server_reproduces_the_averager_metric(
    tmp_path: Path, live_server: LocalServer
) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ema = EMA(model, decays=(0.9,))
    losses: dict[int, float] = {}
    with Monitor("proj", "best", live_server.url, run_dir=tmp_path / "r", **FAST) as mon:
        mon.watch(ema, stats_every=100)
        mon.track_best("loss", mode="min", averager="ema_0.9")
        for step in range(40):
            train_step(model, opt)
            ema.update(model)
            mon.step(step)
            if step % 8 == 7:
                results = evaluate_all(model, [ema], eval_fn)
                losses[step] = results["ema_0.9"]["loss"]
                mon.log_eval(step, results)

    best_step = min(losses, key=losses.__getitem__)
    answer = httpx.get(f"{live_server.url}/api/runs/{mon.run_id}/snapshots/best",
                       params={"averager": "ema_0.9", "metric": "loss", "mode": "min"})
    assert answer.status_code == 200
    (tmp_path / "best.safetensors").write_bytes(answer.content)
    fresh = tiny_model(seed=123)
    metadata = load_snapshot(fresh, tmp_path / "best.safetensors")
    assert eval_fn(fresh)["loss"] == losses[best_step]
    assert metadata["averager"] == "ema_0.9"
    snaps = httpx.get(f"{live_server.url}/api/runs/{mon.run_id}/snapshots").json()
    improving = [s for s in losses if losses[s] == min(v for t, v in losses.items() if t <= s)]
    assert sorted(s["step"] for s in snaps) == improving
    assert sorted((tmp_path / "r" / "snapshots").iterdir())  # local copies kept
    run = httpx.get(f"{live_server.url}/api/runs/{mon.run_id}").json()
    assert (run["summary"]["primary_metric"], run["summary"]["primary_mode"]) == ("loss", "min")
    assert run["best"]["ema_0.9"] == {"metric": "loss", "value": losses[best_step],
                                      "step": best_step}


def test_non_finite_config_values_travel_as_the_api_strings(
    tmp_path: Path, live_server: LocalServer
) -> None:
    config = {"max_grad_norm": float("inf"), "opt": {"betas": [0.9, float("nan")]}, "lr": 0.1}
    with Monitor("proj", "inf-config", live_server.url, config=config, run_dir=tmp_path / "r",
                 **FAST) as mon:
        mon.step(0, {"loss": 1.0})
    run = find_run(live_server.url, "proj", "inf-config")
    assert run["status"] == "finished"
    assert run["config"] == {"max_grad_norm": "Infinity", "opt": {"betas": [0.9, "NaN"]},
                             "lr": 0.1}


def test_context_manager_marks_the_run_crashed_on_an_exception(
    tmp_path: Path, live_server: LocalServer
) -> None:
    with pytest.raises(RuntimeError, match="boom"), Monitor(
        "proj", "ctx", live_server.url, run_dir=tmp_path / "r", **FAST
    ) as mon:
        mon.step(0, {"loss": 1.0})
        raise RuntimeError("boom")

    assert find_run(live_server.url, "proj", "ctx")["status"] == "crashed"
    assert series(live_server.url, mon.run_id)["train/loss"]["values"] == [1.0]


@pytest.mark.parametrize(("tail", "status"), [("raise SystemError('x')", "crashed"),
                                              ("pass", "finished")])
def test_process_exit_without_finish_sets_the_status(
    tmp_path: Path, live_server: LocalServer, tail: str, status: str
) -> None:
    script = textwrap.dedent(f"""
        from ema_core.client import Monitor
        mon = Monitor("proj", "exit-{status}", {live_server.url!r}, run_dir={str(tmp_path)!r})
        mon.step(3, {{"loss": 2.0}})
        {tail}
    """)
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                   cwd=Path(__file__).parents[2])

    run = find_run(live_server.url, "proj", f"exit-{status}")
    assert run["status"] == status
    assert series(live_server.url, run["id"])["train/loss"]["steps"] == [3]


def test_values_may_be_tensors_and_numpy_like_steps(tmp_path: Path,
                                                    live_server: LocalServer) -> None:
    mon = Monitor("proj", "types", live_server.url, run_dir=tmp_path / "r", **FAST)
    mon.step(torch.tensor(4), {"loss": torch.tensor(0.25), "acc": 1})  # type: ignore[arg-type]
    mon.log(5, {"val/nan": float("nan"), "val/inf": float("-inf")})
    mon.finish()

    got = series(live_server.url, mon.run_id)
    assert (got["train/loss"]["values"], got["train/acc"]["values"]) == ([0.25], [1.0])
    assert got["val/inf"]["values"] == ["-Infinity"]
    assert got["val/nan"]["values"] == ["NaN"]


def test_default_run_dir_is_under_emaboard_dir(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path))
    assert default_run_dir("my proj", "a/b") == tmp_path / "runs" / "my_proj" / "a_b"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"project": ""}, ValueError, "Invalid project '': expected a non-empty string"),
    ({"run": "x" * 201}, ValueError, "Invalid run 'xxx.*at most 200 characters"),
    ({"server": "localhost:8000"}, ValueError,
     "Invalid server 'localhost:8000': expected an http:// or https:// URL"),
    ({"config": {"f": object()}}, TypeError, "Invalid config: .*expected JSON-serializable"),
    # what the server would refuse (max_object_bytes, 32 levels) is refused before training
    ({"config": {"notes": "x" * 70_000}}, ValueError,
     r"Invalid config: 70012 bytes of JSON, over the server's limit of 65536 \(max_object"),
    ({"config": {"a": json.loads("[" * 32 + "1" + "]" * 32)}}, ValueError,
     "Invalid config: nested deeper than 32 levels, the server's limit; flatten it"),
    ({"flush_interval_ms": 0}, ValueError, "Invalid flush_interval_ms 0: expected a positive"),
    ({"max_queue_points": 0}, ValueError, "Invalid max_queue_points 0: expected an int >= 1"),
    ({"finish_timeout_s": -1}, ValueError, "Invalid finish_timeout_s -1: expected a positive"),
])
def test_constructor_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object],
                                           error: type[Exception], message: str) -> None:
    args = {"project": "p", "run": "r", "server": "http://127.0.0.1:9", "run_dir": tmp_path,
            **kwargs}
    with pytest.raises(error, match=message):
        Monitor(**args)  # type: ignore[arg-type]


def test_a_run_dir_holding_another_run_is_refused(tmp_path: Path) -> None:
    _offline(tmp_path).finish(timeout_s=1)
    with pytest.raises(ValueError, match=r"Run directory '.*run' belongs to run p/r: pass"):
        Monitor("p", "other", "http://127.0.0.1:9", run_dir=tmp_path / "run")


def test_logging_calls_reject_bad_steps_names_and_values(tmp_path: Path) -> None:
    mon = _offline(tmp_path)
    with pytest.raises(ValueError, match=r"Invalid step -1: expected an int >= 0 and < 2\*\*63"):
        mon.step(-1)
    with pytest.raises(ValueError, match=r"Invalid step 9223372036854775808: expected an int"):
        mon.step(2**63)
    with pytest.raises(ValueError, match=r"Invalid step 1.5: expected an int >= 0"):
        mon.log(1.5, {"a": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Invalid value 'abc' for 'train/loss': expected a real"):
        mon.step(0, {"loss": "abc"})
    with pytest.raises(ValueError, match=r"Invalid metric name '': expected a non-empty string"):
        mon.log(0, {"": 1.0})
    with pytest.raises(ValueError, match=r"Invalid metric name 'x{600}'.*at most 512"):
        mon.log(0, {"x" * 600: 1.0})
    mon.finish(timeout_s=1)
    with pytest.raises(RuntimeError, match=r"Monitor used after finish\(\): create a new"):
        mon.step(1)


def test_watch_track_best_and_finish_reject_bad_arguments(tmp_path: Path) -> None:
    mon = _offline(tmp_path)
    with pytest.raises(ValueError, match=r"track_best\(\) needs a watched averager: call watch"):
        mon.track_best("accuracy")
    with pytest.raises(TypeError, match="Cannot watch object: expected an EMA or SWA"):
        mon.watch(object())
    ema = EMA(tiny_model(), decays=(0.9,))
    with pytest.raises(ValueError, match="Invalid stats_every 0: expected an int >= 1"):
        mon.watch(ema, stats_every=0)
    mon.watch(ema, stats_every=7)
    assert ema.stats_every == 7
    with pytest.raises(ValueError, match=r"Unknown averager 'swa': expected one of \['ema_0.9'\]"):
        mon.track_best("accuracy", averager="swa")
    with pytest.raises(ValueError, match="Invalid mode 'best': expected 'max', 'min' or None"):
        mon.track_best("accuracy", mode="best")
    with pytest.raises(ValueError, match="Invalid status 'done': expected 'finished' or"):
        mon.finish("done")
    with pytest.raises(ValueError, match="Invalid timeout_s 0: expected a positive number"):
        mon.finish(timeout_s=0)
    mon.finish(timeout_s=1)
    mon.finish()  # a second call does nothing


def test_track_best_takes_tensor_and_numpy_eval_values_like_log_eval(tmp_path: Path) -> None:
    import numpy as np

    from ema_core.snapshot import read_snapshot_metadata, snapshot_metrics

    mon = _offline(tmp_path)
    ema = EMA(tiny_model(), decays=(0.9,))
    mon.watch(ema)
    mon.track_best("acc", averager="ema_0.9")
    mon.log_eval(3, {"ema_0.9": {"acc": torch.tensor(0.5), "n": np.float32(2.0)}})
    mon.finish(timeout_s=1)
    (path,) = (tmp_path / "run" / "snapshots").glob("*.safetensors")
    assert path.name == "ema_0.9-step3.safetensors"
    assert snapshot_metrics(read_snapshot_metadata(path)) == {"acc": 0.5, "n": 2.0}
