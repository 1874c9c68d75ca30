"""Monitor in a plain PyTorch loop against a real server: points, statistics, eval, snapshots."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from ema_core.client import Monitor, default_run_dir
from ema_core.ema import EMA
from ema_core.snapshot import load_snapshot
from ema_core.spool import SPOOL_FILENAME, spool_summary, sync_spool
from ema_core.swa import SWA
from ema_core.swap import evaluate_all
from emaboard_server.local_server import LocalServer, free_port
from tests.ema_core.client_utils import eval_fn, find_run, series, tiny_model, train_step
from tests.utils.databases import DATABASES, server_env

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


@pytest.fixture(scope="module")
def postgres_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalServer]:
    """Like ``shared_server``, storing into a PostgreSQL database."""
    with server_env(request, "postgres") as env, LocalServer(
        data_dir=tmp_path_factory.mktemp("server-data"), env=env
    ) as server:
        yield server


@pytest.fixture(params=DATABASES)
def any_server(request: pytest.FixtureRequest) -> LocalServer:
    """``shared_server`` (SQLite), then ``postgres_server``."""
    name = "shared_server" if request.param == "sqlite" else "postgres_server"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _offline(tmp_path: Path, **kwargs: object) -> Monitor:
    """A Monitor whose server is not there (for input checks)."""
    return Monitor("p", "r", f"http://127.0.0.1:{free_port()}", run_dir=tmp_path / "run",
                   **{**FAST, **kwargs})  # type: ignore[arg-type]


def test_plain_loop_streams_scalars_statistics_eval_and_status(
    tmp_path: Path, any_server: LocalServer
) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ema = EMA(model, decays=(0.9, 0.99))
    mon = Monitor("proj", "plain", any_server.url, config={"lr": 0.1}, run_dir=tmp_path / "r",
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

    run = find_run(any_server.url, "proj", "plain")
    got = series(any_server.url, run["id"])
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
    tmp_path: Path, any_server: LocalServer
) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ema = EMA(model, decays=(0.9,))
    losses: dict[int, float] = {}
    with Monitor("proj", "best", any_server.url, run_dir=tmp_path / "r", **FAST) as mon:
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
    answer = httpx.get(f"{any_server.url}/api/runs/{mon.run_id}/snapshots/best",
                       params={"averager": "ema_0.9", "metric": "loss", "mode": "min"})
    assert answer.status_code == 200
    (tmp_path / "best.safetensors").write_bytes(answer.content)
    fresh = tiny_model(seed=123)
    metadata = load_snapshot(fresh, tmp_path / "best.safetensors")
    assert eval_fn(fresh)["loss"] == losses[best_step]
    assert metadata["averager"] == "ema_0.9"
    snaps = httpx.get(f"{any_server.url}/api/runs/{mon.run_id}/snapshots").json()
    improving = [s for s in losses if losses[s] == min(v for t, v in losses.items() if t <= s)]
    assert sorted(s["step"] for s in snaps) == improving
    assert sorted((tmp_path / "r" / "snapshots").iterdir())  # local copies kept
    run = httpx.get(f"{any_server.url}/api/runs/{mon.run_id}").json()
    assert (run["summary"]["primary_metric"], run["summary"]["primary_mode"]) == ("loss", "min")
    assert run["best"]["ema_0.9"] == {"metric": "loss", "value": losses[best_step],
                                      "step": best_step}


def test_non_finite_config_values_travel_as_the_api_strings(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    config = {"max_grad_norm": float("inf"), "opt": {"betas": [0.9, float("nan")]}, "lr": 0.1}
    with Monitor("proj", "inf-config", shared_server.url, config=config, run_dir=tmp_path / "r",
                 **FAST) as mon:
        mon.step(0, {"loss": 1.0})
    run = find_run(shared_server.url, "proj", "inf-config")
    assert run["status"] == "finished"
    assert run["config"] == {"max_grad_norm": "Infinity", "opt": {"betas": [0.9, "NaN"]},
                             "lr": 0.1}


def test_tags_are_set_and_a_resume_adds_to_them(tmp_path: Path,
                                                 live_server: LocalServer) -> None:
    with Monitor("proj", "tagged", live_server.url, tags=["baseline", "bf16"],
                 run_dir=tmp_path / "a", **FAST) as mon:
        mon.step(0, {"loss": 1.0})
    assert find_run(live_server.url, "proj", "tagged")["tags"] == ["baseline", "bf16"]
    with Monitor("proj", "tagged", live_server.url, tags="resumed", resume="allow",
                 run_dir=tmp_path / "b", **FAST) as mon:
        mon.step(1, {"loss": 0.5})
    assert find_run(live_server.url, "proj", "tagged")["tags"] == ["baseline", "bf16", "resumed"]


def test_tags_travel_through_the_spool_to_emaboard_sync(tmp_path: Path,
                                                        live_server: LocalServer) -> None:
    mon = _offline(tmp_path, tags=["offline"])
    mon.step(0, {"loss": 1.0})
    mon.finish(timeout_s=0.5)
    results = sync_spool(tmp_path / "run", live_server.url)
    assert results[0].points_sent == 1
    assert find_run(live_server.url, "p", "r")["tags"] == ["offline"]


def test_log_eval_records_whether_swa_batchnorm_was_recomputed(
    tmp_path: Path, live_server: LocalServer
) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ema, swa = EMA(model, decays=(0.9,)), SWA(model)
    loader = [torch.randn(8, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with Monitor("proj", "bn", live_server.url, run_dir=tmp_path / "r", **FAST) as mon:
        mon.watch(ema, swa, stats_every=1)
        for step in (1, 2):
            ema.update(model)
            swa.update(model)
            if step == 2:
                swa.update_bn(loader, model)
            mon.log_eval(step, {"live": {"acc": 0.5}, "ema_0.9": {"acc": 0.6},
                                "swa": {"acc": 0.7}})
    run = find_run(live_server.url, "proj", "bn")
    got = series(live_server.url, run["id"])
    assert got["bn_recomputed/swa"]["steps"] == [1, 2]
    assert got["bn_recomputed/swa"]["values"] == [0.0, 1.0]
    assert not any(key.startswith("bn_recomputed/ema") for key in got)  # an EMA has no flag


def test_context_manager_marks_the_run_crashed_on_an_exception(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    with pytest.raises(RuntimeError, match="boom"), Monitor(
        "proj", "ctx", shared_server.url, run_dir=tmp_path / "r", **FAST
    ) as mon:
        mon.step(0, {"loss": 1.0})
        raise RuntimeError("boom")

    assert find_run(shared_server.url, "proj", "ctx")["status"] == "crashed"
    assert series(shared_server.url, mon.run_id)["train/loss"]["values"] == [1.0]


@pytest.mark.parametrize(("tail", "status"), [("raise SystemError('x')", "crashed"),
                                              ("pass", "finished")])
def test_process_exit_without_finish_sets_the_status(
    tmp_path: Path, shared_server: LocalServer, tail: str, status: str
) -> None:
    script = textwrap.dedent(f"""
        from ema_core.client import Monitor
        mon = Monitor("proj", "exit-{status}", {shared_server.url!r}, run_dir={str(tmp_path)!r})
        mon.step(3, {{"loss": 2.0}})
        {tail}
    """)
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                   cwd=Path(__file__).parents[2])

    run = find_run(shared_server.url, "proj", f"exit-{status}")
    assert run["status"] == status
    assert series(shared_server.url, run["id"])["train/loss"]["steps"] == [3]


def test_values_may_be_tensors_and_numpy_like_steps(tmp_path: Path,
                                                    shared_server: LocalServer) -> None:
    mon = Monitor("proj", "types", shared_server.url, run_dir=tmp_path / "r", **FAST)
    mon.step(torch.tensor(4), {"loss": torch.tensor(0.25), "acc": 1})  # type: ignore[arg-type]
    mon.log(5, {"val/nan": float("nan"), "val/inf": float("-inf")})
    mon.finish()

    got = series(shared_server.url, mon.run_id)
    assert (got["train/loss"]["values"], got["train/acc"]["values"]) == ([0.25], [1.0])
    assert got["val/inf"]["values"] == ["-Infinity"]
    assert got["val/nan"]["values"] == ["NaN"]


def test_default_run_dir_is_under_emaboard_dir(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path))
    assert default_run_dir("my proj", "a/b") == tmp_path / "runs" / "my%20proj" / "a%2Fb"


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
    ({"tags": ["a,b"]}, ValueError, "Invalid tag 'a,b': a tag holds no comma"),
    ({"tags": [" padded"]}, ValueError, "Invalid tag ' padded': expected 1 to 64 characters"),
    ({"tags": [f"t{i}" for i in range(33)]}, ValueError, "Too many tags: 33 > 32"),
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
    model = tiny_model()
    ema = EMA(model, decays=(0.9,))
    ema.update(model)
    mon.watch(ema)
    mon.track_best("acc", averager="ema_0.9")
    mon.log_eval(3, {"ema_0.9": {"acc": torch.tensor(0.5), "n": np.float32(2.0)}})
    mon.finish(timeout_s=1)
    (path,) = (tmp_path / "run" / "snapshots").glob("*.safetensors")
    assert path.name == "ema_0.9-step3.safetensors"
    assert snapshot_metrics(read_snapshot_metadata(path)) == {"acc": 0.5, "n": 2.0}


def _wait_for_name(mon: Monitor, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while mon.run_name is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mon.run_name is not None
    return mon.run_name


def test_a_second_training_never_writes_into_the_first_one_s_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path))
    runs = []
    for value in (1.0, 2.0):  # the same script, run twice
        mon = Monitor("twice", "resnet", shared_server.url, **FAST)
        for step in range(5):
            mon.step(step, {"loss": value})
        _wait_for_name(mon)
        mon.finish()
        runs.append(mon)

    first, second = runs
    assert (first.run_name, second.run_name) == ("resnet", "resnet-2")
    assert first.run_dir != second.run_dir
    assert "run twice/resnet already exists; this training streams to twice/resnet-2" in (
        caplog.text)
    for mon, value in ((first, 1.0), (second, 2.0)):  # before: one run, first value won
        got = series(shared_server.url, mon.run_id)["train/loss"]
        assert (got["steps"], set(got["values"])) == (list(range(5)), {value})
    assert first.sender_stats.points_conflicting == second.sender_stats.points_conflicting == 0


def test_resume_allow_continues_and_counts_conflicting_values(
    tmp_path: Path, shared_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    first = Monitor("allow", "r", shared_server.url, run_dir=tmp_path / "a", **FAST)
    for step in range(4):
        first.step(step, {"loss": 1.0})
    first.finish()
    resumed = Monitor("allow", "r", shared_server.url, run_dir=tmp_path / "b", resume="allow",
                      **FAST)
    for step in range(2, 6):  # steps 2, 3 again: with other values
        resumed.step(step, {"loss": 2.0})
    resumed.finish()

    assert resumed.run_id == first.run_id and resumed.run_name == "r"
    got = series(shared_server.url, first.run_id)["train/loss"]
    assert (got["steps"], got["values"]) == (list(range(6)), [1.0] * 4 + [2.0] * 2)
    assert resumed.sender_stats.points_conflicting == 2
    assert "the server already held other values for 2 of 4 points" in caplog.text


def test_resume_must_keeps_everything_in_the_spool_when_the_run_is_missing(
    tmp_path: Path, shared_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    mon = Monitor("must", "missing", shared_server.url, run_dir=tmp_path, resume="must", **FAST)
    mon.step(0, {"loss": 1.0})
    mon.finish(timeout_s=1)
    runs = httpx.get(f"{shared_server.url}/api/runs", params={"project": "must"}).json()
    assert mon.run_id is None and runs == []
    assert "resume='must' continues an existing run and must/missing does not exist" in (
        caplog.text)
    assert spool_summary(tmp_path / SPOOL_FILENAME)["points"] == 1


def test_server_and_token_come_from_the_environment_explicit_arguments_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with LocalServer(data_dir=tmp_path / "data", token="s3cret") as server:
        monkeypatch.setenv("EMABOARD_SERVER", server.url)
        monkeypatch.setenv("EMABOARD_TOKEN", "s3cret")
        mon = Monitor("p", "env", run_dir=tmp_path / "a", **FAST)
        mon.step(0, {"loss": 1.0})
        mon.finish()
        assert mon.server == server.url and mon.sender_stats.points_posted == 1
        wrong = Monitor("p", "explicit", server.url, run_dir=tmp_path / "b", token="wrong",
                        **FAST)
        wrong.step(0, {"loss": 1.0})
        wrong.finish(timeout_s=0.5)  # 401: the explicit token was used
        assert wrong.sender_stats.points_posted == 0 and wrong.run_id is None
        monkeypatch.setenv("EMABOARD_SERVER", "http://127.0.0.1:9")
        other = Monitor("p", "explicit-server", server.url, run_dir=tmp_path / "c", **FAST)
        assert other.server == server.url
        other.finish()


def test_eval_of_an_averager_with_nothing_averaged_is_not_logged(
    tmp_path: Path, shared_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny_model()
    swa = SWA(model, start_step=2)
    mon = Monitor("p", "swa-early", shared_server.url, run_dir=tmp_path, **FAST)
    mon.watch(swa)
    results = {"live": {"acc": 0.0982}, "swa": {"acc": 0.1058}}  # as a hand-made eval loop
    mon.log_eval(0, results)
    for _ in range(3):
        swa.update(model)
    mon.log_eval(3, results)
    mon.finish()

    got = series(shared_server.url, mon.run_id, prefix="eval/")
    assert got["eval/live/acc"]["steps"] == [0, 3]
    assert got["eval/swa/acc"]["steps"] == [3]  # was [0, 3]: "ahead of live" at step 0
    summary = httpx.get(f"{shared_server.url}/api/runs/{mon.run_id}").json()["summary"]
    assert summary["averagers"]["swa"] == {"kind": "swa", "update_every": 1, "averaged": True,
                                           "averaged_from": 3}  # the dashboard reads this
    assert caplog.text.count("not logging eval of swa: it holds no average yet") == 1


@pytest.mark.parametrize("resume", ["sometimes", None])
def test_resume_must_be_one_of_the_three_modes(tmp_path: Path, resume: object) -> None:
    with pytest.raises(ValueError, match=r"Invalid resume .*: expected one of \['never', "
                                         r"'allow', 'must'\]"):
        Monitor("p", "r", "http://127.0.0.1:9", run_dir=tmp_path,
                resume=resume)  # type: ignore[arg-type]
