"""EmaboardCallback in a real Lightning Trainer (CPU, 2 epochs) streaming to a real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import eval_fn, find_run, series

pl = pytest.importorskip("lightning.pytorch")
from ema_core.integrations.lightning import EmaboardCallback  # noqa: E402

# lightning 2.6 on torch 2.13 warns from inside its own data loader utilities
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


class TinyModule(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 4) -> (B, 2)
        return self.net(x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader(seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)  # (N, 4)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def _trainer(tmp_path: Path, callback: EmaboardCallback, **kwargs: object) -> pl.Trainer:
    return pl.Trainer(max_epochs=2, accelerator="cpu", callbacks=[callback], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, log_every_n_steps=1,
                      default_root_dir=tmp_path, **kwargs)


def test_callback_streams_loss_statistics_and_dual_eval(tmp_path: Path,
                                                        shared_server: LocalServer) -> None:
    torch.manual_seed(0)
    callback = EmaboardCallback("lightning", "tiny", shared_server.url, decays=(0.9,),
                                swa_start_step=4, stats_every=4, eval_fn=eval_fn,
                                track_best="accuracy", run_dir=tmp_path / "run", **FAST)
    module = TinyModule()
    _trainer(tmp_path, callback).fit(module, _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "tiny")
    got = series(shared_server.url, run["id"])
    assert (run["status"], run["config"]) == ("finished", {"lr": 0.1})
    assert got["train/loss"]["steps"] == list(range(1, 17))  # 8 batches x 2 epochs
    assert got["weights/rel_drift/ema_0.9"]["steps"] == [4, 8, 12, 16]
    assert "weights/cos/swa" in got
    for model_name in ("live", "ema_0.9", "swa"):
        assert got[f"eval/{model_name}/accuracy"]["steps"] == [8, 16]
    ema, swa = callback.averagers
    assert (ema.step, swa.n_averaged) == (16, 12)


def test_gradient_accumulation_updates_once_per_optimizer_step(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    callback = EmaboardCallback("lightning", "accumulate", shared_server.url, decays=(0.9,),
                                run_dir=tmp_path / "run", **FAST)
    _trainer(tmp_path, callback, accumulate_grad_batches=2).fit(
        TinyModule(), _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "accumulate")
    assert series(shared_server.url, run["id"])["train/loss"]["steps"] == list(range(1, 9))
    assert callback.averagers[0].step == 8


def test_without_eval_fn_the_live_validation_metrics_are_streamed(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    callback = EmaboardCallback("lightning", "no-eval-fn", shared_server.url, decays=(0.9,),
                                run_dir=tmp_path / "run", **FAST)
    _trainer(tmp_path, callback).fit(TinyModule(), _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "no-eval-fn")
    got = series(shared_server.url, run["id"], prefix="eval/")
    assert list(got) == ["eval/live/val_loss"] and got["eval/live/val_loss"]["steps"] == [8, 16]


def test_an_exception_in_training_marks_the_run_crashed(tmp_path: Path,
                                                        shared_server: LocalServer) -> None:
    class Exploding(TinyModule):
        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            if self.global_step == 3:
                raise RuntimeError("diverged")
            return super().training_step(batch, batch_idx)

    callback = EmaboardCallback("lightning", "crash", shared_server.url, decays=(0.9,),
                                run_dir=tmp_path / "run", **FAST)
    with pytest.raises(RuntimeError, match="diverged"):
        _trainer(tmp_path, callback).fit(Exploding(), _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "crash")
    assert run["status"] == "crashed"
    assert series(shared_server.url, run["id"])["train/loss"]["steps"] == [1, 2, 3]


def test_nothing_to_average_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Nothing to average: pass decays=\(0.999,\) and/or"):
        EmaboardCallback("p", "r", decays=())
