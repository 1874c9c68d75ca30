"""EmaboardCallback in a real Lightning Trainer (CPU, 2 epochs) streaming to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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
                                track_best="accuracy",
                                monitor_kwargs={"run_dir": tmp_path / "run",
                                                "tags": ["tiny", "cpu"], **FAST})
    module = TinyModule()
    _trainer(tmp_path, callback).fit(module, _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "tiny")
    got = series(shared_server.url, run["id"])
    assert (run["status"], run["config"]) == ("finished", {"lr": 0.1})
    assert run["tags"] == ["cpu", "tiny"]
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
                                monitor_kwargs={"run_dir": tmp_path / "run", **FAST})
    _trainer(tmp_path, callback, accumulate_grad_batches=2).fit(
        TinyModule(), _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "accumulate")
    assert series(shared_server.url, run["id"])["train/loss"]["steps"] == list(range(1, 9))
    assert callback.averagers[0].step == 8


def test_without_eval_fn_the_live_validation_metrics_are_streamed(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    callback = EmaboardCallback("lightning", "no-eval-fn", shared_server.url, decays=(0.9,),
                                monitor_kwargs={"run_dir": tmp_path / "run", **FAST})
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
                                monitor_kwargs={"run_dir": tmp_path / "run", **FAST})
    with pytest.raises(RuntimeError, match="diverged"):
        _trainer(tmp_path, callback).fit(Exploding(), _loader(0), _loader(1))

    run = find_run(shared_server.url, "lightning", "crash")
    assert run["status"] == "crashed"
    assert series(shared_server.url, run["id"])["train/loss"]["steps"] == [1, 2, 3]


def test_nothing_to_average_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Nothing to average: pass decays=\(0.999,\) and/or"):
        EmaboardCallback("p", "r", decays=())


class ResumableLoader(DataLoader):  # type: ignore[type-arg]
    """A DataLoader Lightning can resume mid-epoch (its ``state_dict``/``load_state_dict``
    interface): Lightning restarts a plain one at the start of the epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumed, self._skip = 0, 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        self._consumed = skip
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                self._consumed = i + 1
                yield batch

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = state["consumed"]


def _resumable(seed: int) -> ResumableLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)  # (N, 4)
    return ResumableLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


class CrashingModule(TinyModule):
    def __init__(self, crash_at: int = -1, lr: float = 0.1) -> None:
        super().__init__(lr)
        self.crash_at = crash_at

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.global_step == self.crash_at:
            raise RuntimeError("preempted")
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def _fit(tmp_path: Path, url: str, name: str, crash_at: int = -1, ckpt: Path | None = None,
         checkpoint_to: Path | None = None) -> EmaboardCallback:
    callback = EmaboardCallback(
        "resume", name, url, decays=(0.9, 0.99), swa_start_step=4, stats_every=2,
        eval_fn=eval_fn, ema_kwargs={"use_warmup": True, "warmup_power": 0.75},
        monitor_kwargs=FAST)
    extra: list[Any] = []
    if checkpoint_to is not None:
        extra.append(pl.callbacks.ModelCheckpoint(dirpath=checkpoint_to, save_top_k=-1,
                                                  every_n_train_steps=5))
    torch.manual_seed(0)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", callbacks=[callback, *extra],
                         logger=False, enable_checkpointing=bool(extra),
                         enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1, default_root_dir=tmp_path)
    try:
        trainer.fit(CrashingModule(crash_at), _resumable(0), _resumable(1), ckpt_path=ckpt)
    except RuntimeError as exc:
        assert str(exc) == "preempted"
    return callback


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_mid_epoch_is_bit_identical_and_continues_the_same_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_server: LocalServer
) -> None:
    monkeypatch.setenv("EMABOARD_DIR", str(tmp_path / "emaboard"))
    url = shared_server.url
    whole = _fit(tmp_path / "a", url, "uninterrupted")
    httpx.post(f"{url}/api/runs", json={"project": "resume", "name": "preempted"})  # taken:
    _fit(tmp_path / "b", url, "preempted", crash_at=7, checkpoint_to=tmp_path / "ckpt")
    (ckpt,) = (tmp_path / "ckpt").glob("*step=5*")
    resumed = _fit(tmp_path / "c", url, "preempted", ckpt=ckpt, checkpoint_to=tmp_path / "ckpt")

    for a, b in zip(whole.averagers, resumed.averagers, strict=True):
        # before: EMA max |diff| 0.0101, SWA 0.198; ema.step 11, n_averaged 7 (vs 16, 12)
        for name in a.averager_names:
            torch.testing.assert_close(b.shadow_state_dict(name), a.shadow_state_dict(name),
                                       rtol=0, atol=0)
        assert (b.step, b.get_decay()) == (a.step, a.get_decay())
    assert (resumed.averagers[1].n_averaged, resumed.averagers[0].step) == (12, 16)
    runs = {r["name"]: r for r in httpx.get(f"{url}/api/runs", params={"project": "resume"}).json()}
    # the training got preempted-2; its resumed half continues it (before: preempted-3)
    assert sorted(runs) == ["preempted", "preempted-2", "uninterrupted"]
    expected = series(url, runs["uninterrupted"]["id"])
    got = series(url, runs["preempted-2"]["id"])
    assert sorted(got) == sorted(expected)
    for key in expected:  # no gap, no duplicate, every value as in the uninterrupted run
        assert (got[key]["steps"], got[key]["values"]) == (
            expected[key]["steps"], expected[key]["values"]), key
    assert runs["preempted-2"]["status"] == "finished"
    monitor = resumed.streamer.monitor
    assert monitor is not None and monitor.sender_stats.points_conflicting == 0


class LateModule(TinyModule):
    """Builds its layers in ``configure_model`` (as FSDP users do): none exist at ``setup``."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__(lr)
        self.net = None  # type: ignore[assignment]

    def configure_model(self) -> None:
        if self.net is None:
            self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize(("module", "precision", "dtype"), [
    (TinyModule, "64-true", torch.float64),  # converted after setup: shadows were fp32 there
    (LateModule, "32-true", torch.float32),  # no parameters at setup: EMA() raised there
])
def test_shadows_are_built_where_and_as_the_weights_train(
    tmp_path: Path, shared_server: LocalServer, module: type[TinyModule], precision: str,
    dtype: torch.dtype,
) -> None:
    callback = EmaboardCallback("lightning", f"placement-{precision}", shared_server.url,
                                decays=(0.9,), monitor_kwargs={"run_dir": tmp_path, **FAST})
    model = module()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", precision=precision,
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(model, _loader(0), _loader(1))

    (ema,) = callback.averagers
    live = dict(model.state_dict())
    shadow = ema.shadow_state_dict()
    assert {t.dtype for t in shadow.values()} == {dtype} == {t.dtype for t in live.values()}
    assert ema.step == 8 and not torch.equal(shadow["net.0.weight"], live["net.0.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_shadows_live_on_the_gpu_the_strategy_moved_the_module_to(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    callback = EmaboardCallback("lightning", "cuda", shared_server.url, decays=(0.9,),
                                monitor_kwargs={"run_dir": tmp_path, **FAST})
    trainer = pl.Trainer(max_epochs=1, accelerator="gpu", devices=1, precision="bf16-true",
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    model = TinyModule()
    trainer.fit(model, _loader(0), _loader(1))
    (ema,) = callback.averagers
    param = next(model.parameters())
    assert param.device.type == "cuda" and param.dtype == torch.bfloat16
    assert {t.device.type for t in ema.shadow_state_dict().values()} == {"cuda"}
    assert {t.dtype for t in ema.shadow_state_dict().values()} == {torch.float32}


def test_ema_kwargs_reach_the_ema(tmp_path: Path, shared_server: LocalServer) -> None:
    callback = EmaboardCallback("lightning", "warmup", shared_server.url, decays=(0.999,),
                                ema_kwargs={"use_warmup": True},
                                monitor_kwargs={"run_dir": tmp_path, **FAST})
    _trainer(tmp_path, callback).fit(TinyModule(), _loader(0), _loader(1))  # TypeError before

    (ema,) = callback.averagers
    assert ema.schedule == "warmup" and ema.get_decay() == pytest.approx(1 - 16 ** (-2 / 3))
