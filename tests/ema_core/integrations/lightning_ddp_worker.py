"""EmaboardCallback under Lightning's DDP strategy, 2 CPU processes (run by torchrun).

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m
tests.ema_core.integrations.lightning_ddp_worker OUT_DIR SERVER_URL``; each rank writes its
shadow and what its callback did to ``OUT_DIR/rank<r>.*`` for test_lightning_ddp.py.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ema_core.integrations.lightning import EmaboardCallback
from ema_core.snapshot import snapshot_state
from tests.ema_core.client_utils import eval_fn


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
        self.log("val_loss", nn.functional.cross_entropy(self(x), y), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=gen)  # (N, 4); the DistributedSampler gives each rank 32
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def main() -> None:
    warnings.simplefilter("ignore")
    out, server = Path(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    module = TinyModule()
    rank = int(os.environ["RANK"])  # set by torchrun; Lightning's DDP strategy reuses it
    callback = EmaboardCallback("lightning", "ddp", server, decays=(0.9,), swa_start_step=2,
                                stats_every=2, eval_fn=eval_fn, track_best="accuracy",
                                monitor_kwargs={"run_dir": out / f"run-rank{rank}",
                                                "flush_interval_ms": 20})
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1, default_root_dir=out)
    trainer.fit(module, loader(0), loader(1))
    ema, swa = callback.averagers
    save_file({f"{n}/{k}": v for a in (ema, swa) for n in a.averager_names
               for k, v in snapshot_state(a, n).items()}, str(out / f"rank{rank}.safetensors"))
    monitor = callback.streamer.monitor
    (out / f"rank{rank}.json").write_text(json.dumps({
        "global_step": trainer.global_step, "ema_step": ema.step, "n_averaged": swa.n_averaged,
        "active": monitor.active if monitor else None,
        "drift": ema.last_stats.to_metrics()["weights/rel_drift/ema_0.9"],
    }))


if __name__ == "__main__":
    main()
