"""``emaboard demo`` for two epochs against a real server; everything checked over REST."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ema_core.snapshot import load_snapshot, snapshot_metrics
from emaboard_server.demo.config import DemoConfig
from emaboard_server.demo.data import load_split
from emaboard_server.demo.train import build_model, deterministic, evaluate
from emaboard_server.local_server import LocalServer, free_port

pytestmark = pytest.mark.e2e

AVERAGERS = ("ema_0.99", "ema_0.999", "swa")
STATS_FAMILIES = ("weights/norm", "weights/drift", "weights/rel_drift", "weights/cos", "decay")
REPO = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "emaboard_server", "demo", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One demo run streamed to one real server (shared by the checks below)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    with LocalServer(data_dir=tmp_path / "server-data") as server:
        proc = run_demo(
            tmp_path, "--no-serve", "--server", server.url, "--epochs", "2",
            "--project", "e2e", "--run", "digits",
        )  # fmt: skip
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            (run,) = client.get("/api/runs", params={"project": "e2e"}).json()
            keys = {item["key"] for item in client.get(f"/api/runs/{run['id']}/keys").json()}
            series = client.get(
                f"/api/runs/{run['id']}/metrics", params={"prefix": "eval/"}
            ).json()["series"]
            snapshots = client.get(f"/api/runs/{run['id']}/snapshots").json()
            url = re.search(r"curl .* '(http://\S+)'", proc.stdout)
            assert url is not None, proc.stdout
            best_file = client.get(url.group(1))
            urls = re.findall(r"curl .* '(http://\S+/posthoc/file\S+)'", proc.stdout)
            posthoc_file = client.get(urls[0]) if urls else None
            whatif = client.get(f"/api/runs/{run['id']}/metrics",
                                params={"prefix": "posthoc/"}).json()["series"]
            listing = client.get(f"/api/runs/{run['id']}/posthoc").json()
    return {"run": run, "keys": keys, "series": series, "snapshots": snapshots,
            "best_file": best_file, "stdout": proc.stdout, "tmp_path": tmp_path,
            "posthoc_url": urls[0] if urls else None, "posthoc_file": posthoc_file,
            "whatif": whatif, "listing": listing}  # fmt: skip


def test_run_finished_with_the_terminal_summary(demo_run: dict) -> None:
    assert demo_run["run"]["status"] == "finished"
    assert demo_run["run"]["config"]["epochs"] == 2
    assert demo_run["run"]["tags"] == ["demo", "seed0"]
    stdout = demo_run["stdout"]
    assert f"run.html?id={demo_run['run']['id']}" in stdout
    for model in ("live", *AVERAGERS):
        assert re.search(rf"│ {re.escape(model)} +│ 0\.\d{{4}} │", stdout), model


def test_every_metric_family_arrived(demo_run: dict) -> None:
    keys = demo_run["keys"]
    assert {"train/loss", "train/lr", "weights/norm/live"} <= keys
    for averager in AVERAGERS:
        for family in STATS_FAMILIES:
            assert f"{family}/{averager}" in keys
        assert any(k.startswith("layer/") and k.endswith(f"/rel_drift/{averager}") for k in keys)
        assert f"layer/features.0.0/rel_drift/{averager}" in keys
    for model in ("live", *AVERAGERS):
        assert {f"eval/{model}/accuracy", f"eval/{model}/loss"} <= keys


def test_best_ema_snapshot_reproduces_the_reported_accuracy(demo_run: dict) -> None:
    response = demo_run["best_file"]
    assert response.status_code == 200
    accuracies = demo_run["series"]["eval/ema_0.999/accuracy"]["values"]
    (best,) = [s for s in demo_run["snapshots"] if s["value"] == max(accuracies)][-1:]
    assert best["averager"] == "ema_0.999" and best["metric"] == "accuracy"
    assert demo_run["run"]["best"]["ema_0.999"]["value"] == max(accuracies)

    path = demo_run["tmp_path"] / "best.safetensors"
    path.write_bytes(response.content)
    config = DemoConfig(epochs=2)
    model = build_model(seed=12345)  # fresh weights, not the run's
    metadata = load_snapshot(model, path)
    assert metadata["averager"] == "ema_0.999" and int(metadata["step"]) == best["step"]
    split = load_split(
        config.seed, val_fraction=config.val_fraction, label_noise=config.label_noise
    )
    with deterministic(config.threads):  # the demo's numerics: same kernels, same threads
        assert evaluate(model, split)["accuracy"] == best["value"]
    assert snapshot_metrics(metadata)["accuracy"] == best["value"]


def test_whatif_sweep_arrived_and_the_servers_ema_reproduces_it(demo_run: dict) -> None:
    listing = demo_run["listing"]
    assert [s["step"] for s in listing["steps"]] == [89, 178]  # one snapshot per epoch
    assert listing["sigma_rels"] == [0.05, 0.1] and len(listing["snapshots"]) == 4
    whatif = demo_run["whatif"]
    assert "posthoc/0.05/accuracy" in whatif and all(
        entry["steps"][-1] == 178 for entry in whatif.values())
    assert "What-if decay at step 178" in demo_run["stdout"]
    sigma = re.search(r"sigma_rel=([0-9.]+)&step=178", demo_run["posthoc_url"]).group(1)
    response = demo_run["posthoc_file"]
    assert response.status_code == 200, response.text
    path = demo_run["tmp_path"] / "posthoc.safetensors"
    path.write_bytes(response.content)
    model = build_model(seed=12345)
    load_snapshot(model, path)
    config = DemoConfig(epochs=2)
    split = load_split(config.seed, val_fraction=config.val_fraction,
                       label_noise=config.label_noise)
    with deterministic(config.threads):  # the server's synthesis = the client's sweep
        accuracy = evaluate(model, split)["accuracy"]
    assert accuracy == whatif[f"posthoc/{sigma}/accuracy"]["values"][-1]


@pytest.mark.parametrize(("stop_signal", "started_ignoring_sigint"), [
    (signal.SIGINT, False), (signal.SIGTERM, False),
    (signal.SIGINT, True),  # as a shell script's background job starts it
], ids=["ctrl-c", "term", "ctrl-c-started-ignored"])
def test_keep_serving_serves_until_ctrl_c_or_sigterm(
    tmp_path: Path, stop_signal: int, started_ignoring_sigint: bool
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "demo.out"
    cmd = [
        sys.executable, "-m", "emaboard_server", "demo", "--epochs", "1", "--keep-serving",
        "--port", str(port), "--data-dir", str(tmp_path / "data"), "--run", "kept",
    ]  # fmt: skip
    # A child inherits an ignored SIGINT (not a Python handler): Python then keeps it ignored.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if started_ignoring_sigint else None
    try:
        with out.open("w") as sink:
            proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C to stop" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.2)
        assert f"Dashboard still at {url}/" in out.read_text()
        (run,) = httpx.get(f"{url}/api/runs").json()  # training is over, the server is not
        assert run["name"] == "kept" and run["status"] == "finished"
        proc.send_signal(stop_signal)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health", timeout=2.0)  # the demo's server is gone too
