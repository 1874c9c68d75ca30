"""PostHocEMA under DDP and FSDP2 (torchrun, 2 processes, gloo, CPU; scenario ``posthoc`` of
tests/ema_core/dist_worker.py): rank 0 alone writes the snapshot files, and they hold what one
process holds (FSDP2: gathered from uneven shards)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ema_core.posthoc_files import list_posthoc_snapshots
from tests.utils.torchrun import torchrun

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("posthoc-dist")
    torchrun("tests.ema_core.dist_worker", "posthoc", str(folder))
    return folder


@pytest.mark.parametrize("tag", ["ddp", "fsdp"])
def test_rank_zero_writes_the_single_process_snapshots(out: Path, tag: str) -> None:
    assert sorted(p.name for p in (out / f"posthoc-{tag}-rank1").iterdir()) == []
    want = list_posthoc_snapshots(out / "posthoc-single-rank0")
    got = list_posthoc_snapshots(out / f"posthoc-{tag}-rank0")
    assert [(s.averager, s.step, s.time) for s in got] == [
        (s.averager, s.step, s.time) for s in want]
    assert len(got) == 4 and {s.fingerprint for s in got} == {want[0].fingerprint}
    for a, b in zip(got, want, strict=True):
        mine, reference = load_file(a.path), load_file(b.path)
        assert sorted(mine) == sorted(reference)
        for key, value in reference.items():  # DDP: bit-identical; FSDP2: reduction order
            torch.testing.assert_close(mine[key], value, rtol=1e-6, atol=1e-7, msg=key)
