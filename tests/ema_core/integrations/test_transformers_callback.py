"""EmaboardTrainerCallback in a real Hugging Face Trainer (CPU, no downloads, real server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors import safe_open
from torch import nn

from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import find_run, series

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it
from ema_core.integrations.transformers import (  # noqa: E402
    EmaboardTrainerCallback,
    mean_loss_fn,
)

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


class TinyClassifier(nn.Module):
    """A plain nn.Module with the Trainer's calling convention: returns {"loss", "logits"}."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.net(x)  # (B, 2)
        out: dict[str, Any] = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class RandomDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, seed: int, n: int = 64) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=gen)  # (N, 4)
        self.y = (self.x[:, 0] > 0).long()  # (N,)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def _train(tmp_path: Path, callback: EmaboardTrainerCallback) -> None:
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, max_steps=12,
        per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=0.05,
        eval_strategy="steps", eval_steps=6, logging_steps=3, save_strategy="no",
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=TinyClassifier(), args=args,
                                   train_dataset=RandomDataset(0),
                                   eval_dataset=RandomDataset(1), callbacks=[callback])
    trainer.train()


def test_trainer_callback_streams_logs_statistics_and_dual_eval(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    callback = EmaboardTrainerCallback("hf", "tiny", shared_server.url, decays=(0.9, 0.99),
                                       stats_every=3, track_best="loss", track_mode="min",
                                       monitor_kwargs={"run_dir": tmp_path / "run",
                                                       "tags": ["glue"], **FAST})
    _train(tmp_path, callback)

    run = find_run(shared_server.url, "hf", "tiny")
    got = series(shared_server.url, run["id"])
    assert run["status"] == "finished" and run["config"]["learning_rate"] == 0.05
    assert run["tags"] == ["glue"]
    assert got["train/loss"]["steps"] == [3, 6, 9, 12]
    assert got["train/learning_rate"]["steps"] == [3, 6, 9, 12]
    assert got["hf/eval_loss"]["steps"] == [6, 12]
    assert got["weights/drift/ema_0.99"]["steps"] == [3, 6, 9, 12]
    for model_name in ("live", "ema_0.9", "ema_0.99"):
        assert got[f"eval/{model_name}/loss"]["steps"] == [6, 12]
    assert callback.averagers[0].step == 12
    assert run["best"]["ema_0.9"]["step"] in (6, 12)


def test_mean_loss_fn_weights_batches_by_size_and_names_missing_loss() -> None:
    model = TinyClassifier()
    data = RandomDataset(2, n=10)
    batches = [{"x": data.x[:8], "labels": data.y[:8]}, {"x": data.x[8:], "labels": data.y[8:]}]
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(model.net(data.x), data.y))

    assert mean_loss_fn(batches)(model)["loss"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="Model output has no 'loss': pass eval_fn= to the"):
        mean_loss_fn([{"x": data.x}])(model)
    with pytest.raises(ValueError, match="Empty eval dataloader: pass eval_dataset= to the"):
        mean_loss_fn([])(model)


class Preempt(transformers.TrainerCallback):
    """Raises after optimizer step 7, as a preempted job dies."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 7:
            raise RuntimeError("preempted")


def _run(tmp_path: Path, url: str, name: str, out: Path, *, preempt: bool = False,
         resume: str | None = None) -> EmaboardTrainerCallback:
    callback = EmaboardTrainerCallback(
        "hf-resume", name, url, decays=(0.9, 0.99), swa_start_step=4, stats_every=2,
        ema_kwargs={"use_warmup": True}, monitor_kwargs=FAST)
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(out), report_to=[], use_cpu=True, max_steps=16,
        per_device_train_batch_size=8, per_device_eval_batch_size=16, learning_rate=0.05,
        eval_strategy="steps", eval_steps=4, logging_steps=2, save_strategy="steps",
        save_steps=4, disable_tqdm=True,  # logging_steps divides save_steps: see docs/client.md
    )
    extra = [Preempt()] if preempt else []
    trainer = transformers.Trainer(model=TinyClassifier(), args=args,
                                   train_dataset=RandomDataset(0),
                                   eval_dataset=RandomDataset(1), callbacks=[callback, *extra])
    try:
        trainer.train(resume_from_checkpoint=resume)
    except RuntimeError as exc:
        assert str(exc) == "preempted"
    return callback


def test_resume_mid_epoch_is_bit_identical_from_safetensors_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_server: LocalServer
) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path / "emaboard"))
    url = shared_server.url
    whole = _run(tmp_path, url, "uninterrupted", tmp_path / "a")
    _run(tmp_path, url, "preempted", tmp_path / "b", preempt=True)
    checkpoint = tmp_path / "b" / "checkpoint-4"
    assert {"emaboard_averagers.safetensors", "emaboard_state.json"} <= {
        p.name for p in checkpoint.iterdir()}  # before: nothing of ours in checkpoint-4
    state = json.loads((checkpoint / "emaboard_state.json").read_text())
    assert state["extra"]["global_step"] == 4 and state["extra"]["run"]["name"] == "preempted"
    with safe_open(str(checkpoint / "emaboard_averagers.safetensors"), "pt") as handle:
        assert "0/ema_0.9/net.0.weight" in handle.keys()  # tensors only: nothing to unpickle
    resumed = _run(tmp_path, url, "preempted", tmp_path / "b", resume=str(checkpoint))

    for a, b in zip(whole.averagers, resumed.averagers, strict=True):
        # before: EMA max |diff| 0.049, SWA 0.047; ema.step 11, n_averaged 7 (vs 16, 12)
        for name in a.averager_names:
            torch.testing.assert_close(b.shadow_state_dict(name), a.shadow_state_dict(name),
                                       rtol=0, atol=0)
        assert (b.step, b.get_decay()) == (a.step, a.get_decay())
    runs = {r["name"]: r for r in
            httpx.get(f"{url}/api/runs", params={"project": "hf-resume"}).json()}
    assert sorted(runs) == ["preempted", "uninterrupted"]
    expected = series(url, runs["uninterrupted"]["id"])
    got = series(url, runs["preempted"]["id"])
    # The Trainer's own timing logs differ between processes; everything else is identical.
    timing = ("hf/train_runtime", "hf/train_samples_per_second", "hf/train_steps_per_second",
              "hf/eval_runtime", "hf/eval_samples_per_second", "hf/eval_steps_per_second",
              "hf/train_loss")
    assert sorted(got) == sorted(expected)
    for key in set(expected) - set(timing):
        assert (got[key]["steps"], got[key]["values"]) == (
            expected[key]["steps"], expected[key]["values"]), key
    assert runs["preempted"]["status"] == "finished"
    monitor = resumed.streamer.monitor
    assert monitor is not None and monitor.sender_stats.points_conflicting == 0


def test_resuming_without_our_files_says_so_and_starts_a_new_run(
    tmp_path: Path, shared_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    _run(tmp_path, shared_server.url, "no-files", tmp_path / "b", preempt=True)
    for name in ("emaboard_averagers.safetensors", "emaboard_state.json"):
        (tmp_path / "b" / "checkpoint-4" / name).unlink()
    resumed = _run(tmp_path, shared_server.url, "no-files", tmp_path / "b",
                   resume=str(tmp_path / "b" / "checkpoint-4"))
    assert "training resumed at step 4, but no emaboard state" in caplog.text
    assert resumed.averagers[0].step == 12
    assert resumed.streamer.monitor is not None
    assert resumed.streamer.monitor.run_name == "no-files-2"
