"""PostHocEMA: exact power profiles, snapshot files, reconstruction against tracked EMAs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ema_core.ema import EMA
from ema_core.exceptions import InvalidDecayError, ModelMismatchError
from ema_core.posthoc_ema import PostHocEMA
from ema_core.posthoc_files import (
    list_posthoc_snapshots,
    read_posthoc_snapshot,
    solve_for_snapshots,
)
from ema_core.schedules import sigma_rel_to_gamma
from ema_core.snapshot import load_snapshot, read_snapshot_metadata


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: one intra-op thread is 5-10x faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Regressor(nn.Module):
    """Linear → BatchNorm → Tanh → Linear: parameters, averaged buffers, an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.Tanh(),
                                  nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 8) -> (B, 1)
        return self.body(x)


def train(model, averagers, steps, *, seed=0, batch_sizes=None, on_step=None):
    """SGD with momentum on a fixed regression task; every averager updated each step."""
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.randn(2048, 8, generator=gen)
    y_all = torch.sin(x_all @ torch.randn(8, 1, generator=gen))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(1, steps + 1):
        batch = 32 if batch_sizes is None else int(batch_sizes[step - 1])
        idx = torch.randint(0, 2048, (batch,), generator=gen)
        loss = (model(x_all[idx]) - y_all[idx]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for averager in averagers:
            if isinstance(averager, PostHocEMA) and averager.time_unit == "samples":
                averager.update(model, num_samples=batch)
            else:
                averager.update(model)
        if on_step is not None:
            on_step(step)


def relative_error(rebuilt, shadow, live) -> float:
    """‖rebuilt − shadow‖ / ‖shadow − live‖ over the floating-point tensors, in float64."""
    keys = [k for k, v in shadow.items() if v.is_floating_point()]
    err = sum(float((rebuilt[k].double() - shadow[k].double()).square().sum()) for k in keys)
    ref = sum(float((live[k].double() - shadow[k].double()).square().sum()) for k in keys)
    return (err / ref) ** 0.5


@pytest.mark.parametrize("update_every", [1, 4, 10])
def test_reconstruction_matches_a_directly_tracked_sigma_rel(tmp_path, update_every) -> None:
    torch.manual_seed(0)
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=50, update_every=update_every)
    tracked = EMA(model, schedule="power", sigma_rels=[0.07], update_every=update_every)
    at_1000 = {}

    def keep(step: int) -> None:
        if step == 1000:
            at_1000["shadow"] = {k: v.clone() for k, v in tracked.shadow_state_dict().items()}
            at_1000["live"] = {k: v.clone() for k, v in model.state_dict().items()}

    train(model, [posthoc, tracked], 1500, on_step=keep)
    assert len(posthoc.snapshots) == 60  # 30 snapshot steps x 2 sigma_rels
    final = relative_error(posthoc.reconstruct(0.07), tracked.shadow_state_dict(),
                           model.state_dict())
    assert final <= 1e-3  # 1.3e-4 / 1.5e-4 / 0.9e-4 for k = 1 / 4 / 10, 30 snapshot times
    earlier = relative_error(posthoc.reconstruct(0.07, step=1000), at_1000["shadow"],
                             at_1000["live"])
    assert earlier <= 1e-3  # 2.9e-4 / 3.1e-4 / 2.4e-4 from the 20 snapshot times to step 1000
    assert posthoc.solve(0.07, step=1000).used.sum() == 40
    posthoc.close()


def test_time_in_samples_with_changing_batch_sizes_is_exact(tmp_path) -> None:
    torch.manual_seed(1)
    model = Regressor()
    sizes = np.random.default_rng(0).integers(8, 64, size=2400)
    posthoc = PostHocEMA(model, tmp_path / "a", snapshot_every=100, time_unit="samples",
                         update_every=2)
    tracked = PostHocEMA(model, tmp_path / "b", snapshot_every=10**9, sigma_rels=[0.07],
                         time_unit="samples", update_every=2)
    train(model, [posthoc, tracked], 2400, batch_sizes=sizes)
    assert posthoc.time == int(sizes.sum()) == tracked.time
    rebuilt = posthoc.reconstruct(0.07)
    # 1.4e-4 with 24 snapshot times
    assert relative_error(rebuilt, tracked.shadow_state_dict(), model.state_dict()) <= 1e-3
    steps_clock = EMA(model, schedule="power", sigma_rels=[0.07], update_every=2)
    assert steps_clock.averager_names == tracked.averager_names  # same name, other clock


def realised_profile(update_every, *, time_unit="steps", update_after_step=0, steps=60):
    """Each step's live model is a one-hot vector: the shadow holds every state's weight."""
    model = nn.Linear(steps, 1, bias=False).double()
    sizes = [3 + (s * 7) % 11 for s in range(steps)]
    ema = PostHocEMA(model, "/nonexistent-never-written", snapshot_every=10**9,
                     gammas=[6.5], time_unit=time_unit, update_every=update_every,
                     update_after_step=update_after_step)
    for s in range(steps):
        with torch.no_grad():
            model.weight.zero_()
            model.weight[0, s] = 1.0
        ema.update(model, num_samples=sizes[s] if time_unit == "samples" else None)
    return ema.shadow_state_dict()["weight"][0].numpy(), sizes, ema


@pytest.mark.parametrize("update_every", [1, 4, 10])
@pytest.mark.parametrize("time_unit", ["steps", "samples"])
def test_each_state_gets_the_integral_of_the_continuous_profile(
    update_every, time_unit, monkeypatch
) -> None:
    monkeypatch.setattr(Path, "mkdir", lambda *a, **k: None)  # no folder for this test
    weights, sizes, ema = realised_profile(update_every, time_unit=time_unit,
                                           update_after_step=5)
    g = 6.5
    expected = np.zeros(60)
    clock = np.cumsum([0] * 5 + (sizes[5:] if time_unit == "samples" else [1] * 55))
    previous = 0.0
    for s in range(5 + update_every - 1, 60, update_every):  # update steps (0-based)
        expected[s] = (clock[s] ** (g + 1) - previous ** (g + 1)) / ema.time ** (g + 1)
        previous = clock[s]
    assert ema.time == clock[60 - 1 - (60 - 5) % update_every]
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-14)


def test_snapshot_files_metadata_and_names(tmp_path) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=10, update_every=3,
                         update_after_step=2)
    train(model, [posthoc], 20)
    posthoc.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"ema_sigma_rel_{s}-{step:010d}.safetensors"
                     for s in ("0.05", "0.1") for step in (10, 20)]
    meta = read_snapshot_metadata(tmp_path / "ema_sigma_rel_0.1-0000000010.safetensors")
    assert meta["snapshot_kind"] == "posthoc" and meta["step"] == "10"
    assert meta["time"] == "6" and meta["time_unit"] == "steps"  # t = 10 - 2, last update t=6
    assert float(meta["gamma"]) == pytest.approx(sigma_rel_to_gamma(0.1))
    assert meta["update_every"] == "3" and meta["update_after_step"] == "2"
    assert json.loads(meta["copied_keys"]) == ["body.1.num_batches_tracked"]
    assert float(meta["wall_time"]) > 1.7e9 and len(meta["fingerprint"]) == 16
    record = read_posthoc_snapshot(tmp_path / "ema_sigma_rel_0.05-0000000020.safetensors")
    assert (record.step, record.time, record.sigma_rel) == (20, 18.0, 0.05)
    assert [s.time for s in list_posthoc_snapshots(tmp_path)] == [6.0, 6.0, 18.0, 18.0]


def test_no_second_snapshot_of_an_unchanged_shadow(tmp_path) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=5, update_every=10)
    train(model, [posthoc], 30)
    assert posthoc.snapshot() == []  # step 30 was just snapshotted
    # steps 5 (time 0), 15 and 25 (no update since 10 and 20) hold nothing new
    assert [(s.step, s.time) for s in posthoc.snapshots[::2]] == [(10, 10), (20, 20), (30, 30)]
    assert posthoc.solve(0.1, step=20).used.sum() == 4  # no duplicate (time, gamma) pairs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_snapshots_are_read_without_torch_exactly(tmp_path, dtype) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=50, snapshot_dtype=dtype)
    full = PostHocEMA(model, tmp_path / "fp32", snapshot_every=50)
    train(model, [posthoc, full], 1000)
    posthoc.flush()
    from safetensors.torch import load_file

    on_disk = load_file(str(posthoc.snapshots[-1].path))
    assert on_disk["body.0.weight"].dtype == dtype
    assert on_disk["body.1.num_batches_tracked"].dtype == torch.int64
    one = solve_for_snapshots([posthoc.snapshots[-1]], gamma=posthoc.snapshots[-1].gamma)
    from ema_core.posthoc_synthesis import synthesize_posthoc

    arrays = synthesize_posthoc([posthoc.snapshots[-1]], one)
    for key, value in on_disk.items():
        assert torch.equal(torch.from_numpy(arrays[key]), value.float() if
                           value.is_floating_point() else value), key
    error = relative_error(posthoc.reconstruct(0.07), full.reconstruct(0.07), model.state_dict())
    # measured 1.4e-3 (fp16) and 1.0e-2 (bf16) of ‖shadow − live‖: rounding × Σ|coef|
    assert error < (5e-3 if dtype == torch.float16 else 5e-2)


def test_snapshots_of_another_model_are_refused_naming_the_file(tmp_path) -> None:
    a = PostHocEMA(Regressor(), tmp_path, snapshot_every=1)
    other = nn.Sequential(nn.Linear(8, 4))
    b = PostHocEMA(other, tmp_path, snapshot_every=1, sigma_rels=[0.2])
    a.update(a._store.model)
    b.update(other)
    a.flush()
    b.flush()
    found = list_posthoc_snapshots(tmp_path)
    with pytest.raises(ModelMismatchError, match=r"ema_sigma_rel_0\.2-0000000001\.safetensors' "
                       r"is of another model \(fingerprint"):
        solve_for_snapshots(found, sigma_rel=0.07)


def test_bad_requests_name_the_value(tmp_path) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=100)
    train(model, [posthoc], 300)
    with pytest.raises(InvalidDecayError, match=r"^No post-hoc snapshot at step 250: snapshots "
                       r"exist at steps \[100, 200, 300\]"):
        posthoc.reconstruct(0.07, step=250)
    with pytest.raises(InvalidDecayError, match=r"^Invalid sigma_rel 0\.3: expected 0 < "):
        posthoc.reconstruct(0.3)
    with pytest.raises(ValueError, match=r"^num_samples=32 given but time_unit='steps'"):
        posthoc.update(model, num_samples=32)
    samples = PostHocEMA(model, tmp_path / "s", snapshot_every=1, time_unit="samples")
    with pytest.raises(ValueError, match=r"^Invalid num_samples None: time_unit='samples'"):
        samples.update(model)
    with pytest.raises(ValueError, match=r"^Invalid snapshot_every 0"):
        PostHocEMA(model, tmp_path, snapshot_every=0)
    with pytest.raises(ValueError, match=r"^Invalid time_unit 'images'"):
        PostHocEMA(model, tmp_path, snapshot_every=1, time_unit="images")
    with pytest.raises(ValueError, match=r"^Invalid snapshot_dtype torch\.int8"):
        PostHocEMA(model, tmp_path, snapshot_every=1, snapshot_dtype=torch.int8)


def test_reconstruction_saves_a_loadable_checkpoint(tmp_path) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path / "snaps", snapshot_every=100)
    train(model, [posthoc], 1000)
    path = posthoc.save_reconstruction(tmp_path / "best.safetensors", 0.12)
    fresh = Regressor()
    meta = load_snapshot(fresh, path)
    assert meta["averager"] == "posthoc_sigma_rel_0.12" and meta["step"] == "1000"
    assert float(meta["residual"]) < 0.05 and int(meta["snapshots_used"]) == 20
    rebuilt = posthoc.reconstruct(0.12)
    torch.testing.assert_close(fresh.state_dict(), rebuilt, rtol=0, atol=0)
    # the integer buffer comes from the latest snapshot, not a blend
    assert int(rebuilt["body.1.num_batches_tracked"]) == 1000


def test_resume_continues_bit_identically(tmp_path) -> None:
    torch.manual_seed(3)
    model = Regressor()
    straight = PostHocEMA(model, tmp_path / "a", snapshot_every=40, update_every=3,
                          time_unit="samples")
    train(model, [straight], 100, batch_sizes=[17] * 100)
    state = straight.state_dict()
    resumed = PostHocEMA(model, tmp_path / "a", snapshot_every=40, update_every=3,
                         time_unit="samples")
    resumed.load_state_dict(state)
    assert resumed.time == straight.time and len(resumed.snapshots) == 4
    more = [16] * 50
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, [straight], 50, seed=9, batch_sizes=more)
    model.load_state_dict(snapshot)
    train(model, [resumed], 50, seed=9, batch_sizes=more)
    for name in straight.averager_names:
        torch.testing.assert_close(resumed.shadow_state_dict(name),
                                   straight.shadow_state_dict(name), rtol=0, atol=0)
    assert resumed.time == straight.time and resumed.step == 150
    assert [s.step for s in resumed.snapshots] == [40, 40, 80, 80, 120, 120]
    with pytest.raises(ValueError, match=r"time_unit=samples"):
        PostHocEMA(model, tmp_path / "c", snapshot_every=40, update_every=3).load_state_dict(state)


def test_a_failed_write_surfaces_on_flush_and_training_goes_on(tmp_path, caplog) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path / "gone", snapshot_every=5)
    (tmp_path / "gone").rmdir()
    with caplog.at_level(logging.ERROR):
        train(model, [posthoc], 10)  # two snapshot steps, neither can be written
        with pytest.raises(FileNotFoundError):
            posthoc.flush()
    assert "Writing a post-hoc EMA snapshot failed" in caplog.text
    assert posthoc.step == 10 and posthoc.snapshots == []


def test_listeners_hear_of_each_written_snapshot(tmp_path) -> None:
    model = Regressor()
    posthoc = PostHocEMA(model, tmp_path, snapshot_every=5)
    heard = []
    posthoc.snapshot_listeners.append(heard.append)
    posthoc.snapshot_listeners.append(lambda record: 1 / 0)  # a broken one loses nothing
    train(model, [posthoc], 10)
    posthoc.close()
    assert [(r.step, r.averager) for r in heard] == [
        (5, "ema_sigma_rel_0.05"), (5, "ema_sigma_rel_0.1"),
        (10, "ema_sigma_rel_0.05"), (10, "ema_sigma_rel_0.1"),
    ]
    assert all(r.path.is_file() for r in heard) and len(posthoc.snapshots) == 4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("device", ["cuda", "cpu"])  # shadows on the GPU, or offloaded
def test_cuda_model_snapshots_and_reconstructs_as_on_cpu(tmp_path, device) -> None:
    torch.manual_seed(0)
    cpu_model = Regressor()
    gpu_model = Regressor().cuda()
    gpu_model.load_state_dict(cpu_model.state_dict())
    on_cpu = PostHocEMA(cpu_model, tmp_path / "cpu", snapshot_every=20)
    on_gpu = PostHocEMA(gpu_model, tmp_path / "gpu", snapshot_every=20, device=device)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):  # the same weights on both: only the averaging runs on the GPU
        with torch.no_grad():
            for p_cpu, p_gpu in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
                p_cpu.add_(torch.randn(p_cpu.shape, generator=gen), alpha=0.01)
                p_gpu.copy_(p_cpu)
        on_cpu.update(cpu_model)
        on_gpu.update(gpu_model)
    rebuilt_cpu, rebuilt_gpu = on_cpu.reconstruct(0.07), on_gpu.reconstruct(0.07)
    for key, value in rebuilt_cpu.items():
        torch.testing.assert_close(rebuilt_gpu[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert [s.time for s in on_gpu.snapshots] == [s.time for s in on_cpu.snapshots]
