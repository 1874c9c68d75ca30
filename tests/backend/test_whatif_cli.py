"""``emaboard posthoc``: the what-if sweep after training, from a folder or a server's
snapshots, with a user entry point; results printed and uploaded as posthoc/... points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import torch

from ema_core.posthoc_ema import PostHocEMA
from ema_core.transport import ApiClient
from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import series, tiny_model, train_step

EVAL_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    def evaluate(weights):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        model.load_state_dict(weights)
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(64, 4, generator=gen)
        y = (x[:, 0] > 0).long()
        with torch.no_grad():
            logits = model(x)
        return {"loss": float(nn.functional.cross_entropy(logits, y)),
                "accuracy": float((logits.argmax(1) == y).float().mean())}
''')


@pytest.fixture
def server(shared_server: LocalServer) -> LocalServer:
    """The session's server (these tests create runs of their own names)."""
    return shared_server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with snapshots of a trained tiny model and the user's eval module."""
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    posthoc = PostHocEMA(model, tmp_path / "phema", snapshot_every=10)
    for _ in range(100):
        train_step(model, opt)
        posthoc.update(model)
    posthoc.close()
    (tmp_path / "evalmod.py").write_text(EVAL_MODULE)
    return tmp_path


def emaboard(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emaboard_server", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240, check=False,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"})


def new_run(server: LocalServer, name: str) -> int:
    api = ApiClient(server.url)
    try:
        return api.create_run("proj", name, {}).id
    finally:
        api.close()


def test_sweep_of_a_folder_prints_and_uploads(workdir: Path, server: LocalServer) -> None:
    run_id = new_run(server, "cli-folder")
    done = emaboard(workdir, "posthoc", "phema", "--eval", "evalmod:evaluate", "--run",
                    str(run_id), "--upload", "--server", server.url)
    assert done.returncode == 0, done.stderr
    assert "What-if decay at step 100" in done.stdout
    assert "best accuracy: sigma_rel" in done.stdout and "best loss: sigma_rel" in done.stdout
    got = series(server.url, run_id, prefix="posthoc/")
    assert len(got) == 20 and "posthoc/0.05/accuracy" in got  # 10 sigma_rels x 2 metrics
    assert all(entry["steps"] == [100] for entry in got.values())


def test_sweep_of_a_servers_snapshots_with_chosen_sigma_rels(
    workdir: Path, server: LocalServer
) -> None:
    run_id = new_run(server, "cli-server")
    api = ApiClient(server.url)
    for path in sorted((workdir / "phema").glob("*.safetensors")):
        averager, step = path.stem.rsplit("-", 1)
        api.upload_snapshot(run_id, path, averager=averager, step=int(step), metric=None,
                            value=None, metadata={})
    api.close()
    done = emaboard(workdir, "posthoc", "--run", str(run_id), "--eval", "evalmod:evaluate",
                    "--sigma-rels", "0.07,0.12", "--step", "50", "--cache", "cache",
                    "--server", server.url)
    assert done.returncode == 0, done.stderr
    assert "What-if decay at step 50" in done.stdout and "0.07" in done.stdout
    assert len(list((workdir / "cache").glob("*.safetensors"))) == 20
    listing = httpx.get(f"{server.url}/api/runs/{run_id}/metrics").json()["series"]
    assert listing == {}  # no --upload: nothing sent


def test_bad_arguments_are_named(workdir: Path, server: LocalServer) -> None:
    done = emaboard(workdir, "posthoc", "phema", "--eval", "evalmod:nope")
    assert done.returncode == 1
    assert "Invalid --eval 'evalmod:nope': evalmod has no function 'nope'" in done.stderr
    done = emaboard(workdir, "posthoc", "phema", "--eval", "evalmod:evaluate", "--step", "55")
    assert done.returncode == 1 and "No post-hoc snapshot at step 55" in done.stderr
    done = emaboard(workdir, "posthoc", "phema", "--eval", "evalmod:evaluate", "--upload")
    assert done.returncode == 1 and "--upload needs --run ID" in done.stderr
