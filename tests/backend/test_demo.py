"""``emaboard demo`` without the end-to-end server run: data, config, training, CLI, server."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import torch
from rich.console import Console

from ema_core.snapshot import load_snapshot, snapshot_metrics
from emaboard_server.cli import main
from emaboard_server.demo.config import DemoConfig
from emaboard_server.demo.data import load_split
from emaboard_server.demo.report import best_snapshot_url, curl_command, results_table
from emaboard_server.demo.train import DemoResult, EpochResult, build_model, evaluate, train
from emaboard_server.local_server import (
    free_port,
)


class RecordingProgress:
    def __init__(self) -> None:
        self.total: int | None = None
        self.steps: list[int] = []
        self.epochs: list[tuple[int, float]] = []

    def on_start(self, total_steps: int) -> None:
        self.total = total_steps

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        self.steps.append(step)

    def on_epoch(self, result: EpochResult, best_ema_accuracy: float) -> None:
        self.epochs.append((result.epoch, best_ema_accuracy))


@pytest.fixture(scope="module")
def two_epochs() -> DemoResult:
    return train(DemoConfig(epochs=2))


def test_split_is_seeded_and_label_noise_changes_exactly_its_share() -> None:
    clean, noisy = load_split(3), load_split(3, label_noise=0.2)
    assert clean.train_x.shape == (1438, 1, 8, 8) and clean.val_x.shape == (359, 1, 8, 8)
    assert (
        clean.train_x.dtype == torch.float32 and 0 <= clean.train_x.min() < clean.train_x.max() <= 1
    )
    assert torch.equal(clean.train_x, noisy.train_x) and torch.equal(clean.val_y, noisy.val_y)
    assert noisy.noisy == round(1438 * 0.2) == int((clean.train_y != noisy.train_y).sum())
    assert torch.equal(load_split(3, label_noise=0.2).train_y, noisy.train_y)
    assert not torch.equal(load_split(4).val_y, clean.val_y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.0}, "Invalid val_fraction 1.0: expected 0 < val_fraction < 1"),
        ({"label_noise": -0.1}, "Invalid label_noise -0.1: expected 0 <= label_noise < 1"),
    ],
)
def test_split_rejects_bad_fractions(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_split(0, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "Invalid epochs 0: expected an integer >= 1"),
        ({"lr": 0.0}, "Invalid lr 0.0 / swa_lr 0.05: expected > 0"),
        ({"batch_size": 0}, "Invalid batch_size 0: expected an integer >= 1"),
        ({"stats_every": 0}, "Invalid stats_every 0: expected >= 1"),
        ({"threads": 0}, "Invalid threads 0: expected an integer >= 1"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DemoConfig(**kwargs)  # type: ignore[arg-type]


def test_config_derived_values() -> None:
    assert DemoConfig(epochs=20).swa_start_epoch == 15
    assert DemoConfig(epochs=2).swa_start_epoch == 1
    assert DemoConfig(epochs=1).swa_start_epoch == 0
    assert DemoConfig(decays=(0.9, 0.95)).best_averager == "ema_0.95"
    assert DemoConfig().to_dict()["decays"] == [0.99, 0.999]


def test_training_is_reproducible_and_reports_every_model(two_epochs: DemoResult) -> None:
    progress = RecordingProgress()
    again = train(DemoConfig(epochs=2), progress=progress)
    assert again.history == two_epochs.history  # same seed, same numbers
    first, last = two_epochs.history
    tracked = {"ema_sigma_rel_0.05", "ema_sigma_rel_0.1"}  # the post-hoc EMA's two shadows
    assert set(first.results) == {"live", "ema_0.99", "ema_0.999", *tracked}  # no SWA yet
    assert set(last.results) == {"live", "ema_0.99", "ema_0.999", "swa", *tracked}
    assert progress.total == 2 * 89 and progress.steps == list(range(1, 179))
    assert [epoch for epoch, _ in progress.epochs] == [0, 1]
    assert progress.epochs[-1][1] == two_epochs.best_ema.accuracy
    assert not torch.are_deterministic_algorithms_enabled()  # restored


def test_the_whatif_sweep_runs_after_every_epoch(two_epochs: DemoResult) -> None:
    first, last = two_epochs.history
    assert len(first.whatif) >= 5 and len(last.whatif) == 10  # the grid grows with snapshots
    assert min(last.whatif) == 0.05 and all(set(m) == {"accuracy", "loss"}
                                            for m in last.whatif.values())
    # σ_rel 0.05 is snapshotted itself: its rebuilt EMA evaluates as the tracked shadow
    assert last.whatif[0.05]["accuracy"] == last.results["ema_sigma_rel_0.05"]["accuracy"]
    assert DemoConfig().to_dict()["posthoc_sigma_rels"] == [0.05, 0.1]
    plain = train(DemoConfig(epochs=1, posthoc_sigma_rels=()))
    assert plain.history[0].whatif == {} and "ema_sigma_rel_0.05" not in plain.history[0].results
    assert plain.history[0].results["live"] == first.results["live"]  # no effect on training


def test_other_seed_other_numbers(two_epochs: DemoResult) -> None:
    other = train(DemoConfig(epochs=1, seed=1))
    assert other.history[0].results["live"] != two_epochs.history[0].results["live"]


def test_best_ema_snapshot_reproduces_its_accuracy(two_epochs: DemoResult, tmp_path: Path) -> None:
    from ema_core.snapshot import write_snapshot

    best = two_epochs.best_ema
    accuracies = [epoch.results["ema_0.999"]["accuracy"] for epoch in two_epochs.history]
    assert best.averager == "ema_0.999" and best.accuracy == max(accuracies)
    path = write_snapshot(best.tensors, best.metadata, tmp_path / "best.safetensors")
    model = build_model(seed=99)
    metadata = load_snapshot(model, path)
    assert int(metadata["step"]) == best.step
    assert snapshot_metrics(metadata)["accuracy"] == best.accuracy
    assert evaluate(model, load_split(0, label_noise=0.2))["accuracy"] == best.accuracy


def test_results_table_lists_best_and_final_per_model(two_epochs: DemoResult) -> None:
    console = Console(width=120, record=True)
    console.print(results_table(two_epochs))
    text = console.export_text()
    for name, (accuracy, epoch) in two_epochs.best_accuracy().items():
        final = two_epochs.history[-1].results[name]["accuracy"]
        assert re.search(rf"│ {re.escape(name)} +│ {accuracy:.4f} │ +{epoch} │ {final:.4f} │", text)


def test_download_hint() -> None:
    url = best_snapshot_url("http://h:1/", 7, "ema_0.999")
    assert url == "http://h:1/api/runs/7/snapshots/best?averager=ema_0.999&metric=accuracy&mode=max"
    assert curl_command(url, "ema_0.999") == f"curl -fsS -o best-ema_0.999.safetensors '{url}'"
    assert curl_command(url, "ema_0.999", "secret") == (
        f'curl -fsS -o best-ema_0.999.safetensors -H "Authorization: Bearer $EMABOARD_TOKEN" '
        f"'{url}'"
    )


def test_cli_offline_run_saves_the_best_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--no-serve", "--epochs", "1", "--data-dir", str(tmp_path), "--run", "r1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    path = tmp_path / "r1-best-ema_0.999.safetensors"
    assert f"saved to {path}" in out.replace("\n", "")
    model = build_model(seed=5)
    accuracy = snapshot_metrics(load_snapshot(model, path))["accuracy"]
    assert f"accuracy {accuracy:.4f}" in out
    assert re.search(r"│ live +│ 0\.\d{4} │", out)
    assert "What-if decay at step 89" in out and "Best sigma_rel for accuracy after" in out
    assert len(list((tmp_path / "r1-posthoc").glob("*.safetensors"))) == 2  # kept offline


def test_cli_rejects_a_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--no-serve", "--epochs", "0"]) == 2
    assert "emaboard demo: Invalid epochs 0: expected an integer >= 1" in capsys.readouterr().out


def test_cli_names_the_way_out_when_the_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--data-dir", str(tmp_path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert (
        f"emaboard demo: Port {port} on 127.0.0.1 is in use (Address already in use): pass "
        f"--port with a free port, or --server http://127.0.0.1:{port} to stream to the server "
        "running there"
    ) in out


def test_cli_trains_on_when_the_server_is_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["demo", "--server", url, "--epochs", "1", "--run", "away"]) == 0
    out = capsys.readouterr().out
    assert (
        f"The server at {url} has not answered within 5 s: training anyway; what it cannot "
        "take is spooled and sent when it answers"
    ) in " ".join(out.split())
    hint = re.search(
        r"The server never answered: the run is spooled in (\S+); upload it with "
        r"`emaboard sync (\S+)`",
        out,
    )
    assert hint is not None and hint.group(1) == hint.group(2), out
    run_dir = tmp_path / hint.group(1)  # relative to tmp_path, or absolute
    assert run_dir.is_dir() and run_dir.resolve().is_relative_to(tmp_path.resolve())
