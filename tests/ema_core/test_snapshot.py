from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
import safetensors
import torch
from safetensors.torch import load
from torch import nn

from ema_core.ema import EMA
from ema_core.exceptions import ModelMismatchError, SnapshotFormatError
from ema_core.snapshot import (
    FORMAT,
    load_snapshot,
    read_snapshot_metadata,
    save_snapshot,
    serialize_snapshot,
    snapshot_metadata,
    snapshot_metrics,
    snapshot_state,
    write_snapshot,
)


def make_net(seed: int = 0, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.Linear(hidden, 3))


class StandInAverager:
    """The two methods snapshots use, over a fixed state (what EMA/SWA expose)."""

    def __init__(self, state: dict[str, torch.Tensor], name: str = "ema_0.999") -> None:
        self.state = state
        self.name = name

    def shadow_state_dict(self, name: str | None = None) -> dict[str, torch.Tensor]:
        return self.state

    def averager_info(self, name: str | None = None) -> dict[str, str | int | float]:
        return {"averager": self.name, "decay": 0.999, "schedule": "constant", "step": 120}


def trained_ema(**kwargs: object) -> EMA:
    """A real EMA with two shadows, updated against a few different live weights."""
    net = make_net(seed=1)
    ema = EMA(net, (0.9, 0.99), **kwargs)
    for seed in range(3):
        torch.manual_seed(seed + 10)
        with torch.no_grad():
            for tensor in net.state_dict().values():
                if tensor.is_floating_point():
                    tensor.add_(torch.randn_like(tensor))
        ema.update(net)
    return ema


@pytest.fixture
def averager() -> StandInAverager:
    net = make_net(seed=1)
    net[1].running_mean.uniform_()  # non-trivial buffers
    return StandInAverager({k: v.clone() for k, v in net.state_dict().items()})


@pytest.mark.parametrize("name", ["ema_0.9", "ema_0.99"])
def test_round_trip_of_a_real_ema_is_bit_exact(tmp_path: Path, name: str) -> None:
    ema = trained_ema()
    path = save_snapshot(ema, tmp_path / "s.safetensors", name=name, metrics={"accuracy": 0.5})
    model = make_net(seed=2)
    metadata = load_snapshot(model, path)
    shadow = ema.shadow_state_dict(name)
    assert model.state_dict().keys() == shadow.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, shadow[key]), key
    assert {k: metadata[k] for k in ("averager", "decay", "schedule", "step")} == {
        key: str(value) for key, value in ema.averager_info(name).items()
    }
    assert metadata["averager"] == name and metadata["step"] == "3"


def test_metadata_entries(tmp_path: Path, averager: StandInAverager) -> None:
    metrics = {"accuracy": 0.96875, "loss": float("nan"), "up": float("inf")}
    path = save_snapshot(averager, tmp_path / "s.safetensors", metrics=metrics)
    metadata = read_snapshot_metadata(path)
    assert metadata == {
        "averager": "ema_0.999",
        "decay": "0.999",
        "schedule": "constant",
        "step": "120",
        "metrics": '{"accuracy": 0.96875, "loss": "NaN", "up": "Infinity"}',
        "parameter_count": str(sum(v.numel() for v in averager.state.values())),
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
        "format": FORMAT,
    }
    decoded = snapshot_metrics(metadata)
    assert decoded["accuracy"] == 0.96875 and decoded["up"] == float("inf")
    assert decoded["loss"] != decoded["loss"]  # NaN
    assert load_snapshot(make_net(), path) == metadata


def test_snapshot_state_copies_to_contiguous_cpu(averager: StandInAverager) -> None:
    averager.state["0.weight"] = averager.state["0.weight"].t().contiguous().t()  # strided
    assert not averager.state["0.weight"].is_contiguous()
    state = snapshot_state(averager)
    for key, tensor in state.items():
        assert tensor.is_contiguous() and tensor.device.type == "cpu"
        assert tensor.data_ptr() != averager.state[key].data_ptr()
        assert torch.equal(tensor, averager.state[key])
    averager.state["0.bias"].add_(1.0)  # the shadow moves on; the copy does not
    assert not torch.equal(state["0.bias"], averager.state["0.bias"])


def test_shadow_dtype_kept_in_file_and_cast_on_load(tmp_path: Path) -> None:
    ema = trained_ema(shadow_dtype=torch.bfloat16)
    path = save_snapshot(ema, tmp_path / "bf16.safetensors")
    shadow = ema.shadow_state_dict()
    with safetensors.safe_open(str(path), "pt") as handle:
        assert handle.get_tensor("0.weight").dtype == torch.bfloat16
        assert handle.get_tensor("1.num_batches_tracked").dtype == torch.int64
    model = make_net(seed=4)
    load_snapshot(model, path)
    assert model[0].weight.dtype == torch.float32
    assert torch.equal(model[0].weight, shadow["0.weight"].float())


def test_serialize_matches_file_format(averager: StandInAverager) -> None:
    payload = serialize_snapshot(snapshot_state(averager), {"averager": "ema_0.999"})
    tensors = load(payload)
    assert tensors.keys() == averager.state.keys()
    assert all(torch.equal(tensors[k], averager.state[k]) for k in tensors)


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path, averager: StandInAverager) -> None:
    path = tmp_path / "s.safetensors"
    path.write_bytes(b"old")
    write_snapshot(snapshot_state(averager), {"a": "b"}, path)
    assert read_snapshot_metadata(path) == {"a": "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_wrapped_models_save_and_load_bare_keys(tmp_path: Path) -> None:
    wrapped = nn.Module()
    wrapped.module = make_net(seed=5)  # the key layout DDP/DataParallel produce
    compiled = nn.Module()
    compiled._orig_mod = wrapped  # torch.compile around DDP: "_orig_mod.module.<key>"
    path = save_snapshot(EMA(compiled, 0.9), tmp_path / "s.safetensors")
    with safetensors.safe_open(str(path), "pt") as handle:
        assert sorted(handle.keys()) == sorted(make_net().state_dict())
    load_snapshot(make_net(seed=6), path)  # into a bare model
    target = nn.Module()
    target.module = make_net(seed=7)
    load_snapshot(target, path)  # into a wrapped one
    assert torch.equal(target.module[2].weight, wrapped.module[2].weight)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, averager: StandInAverager) -> None:
    path = save_snapshot(averager, tmp_path / "s.safetensors")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3), nn.Linear(3, 3))
    del averager.state["0.bias"]
    path = save_snapshot(averager, tmp_path / "s.safetensors")
    message = (
        f"Snapshot {str(path)!r} does not match the model's keys: 3 missing (in the model, "
        "not in the file): ['0.bias', '3.bias', '3.weight']. Load it into the architecture "
        "it was saved from, or pass strict=False to load the common keys"
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ModelMismatchError, match=re.escape(message)):
        load_snapshot(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched

    small = make_net(seed=6)
    del small[2]
    with pytest.raises(ModelMismatchError) as info:
        load_snapshot(small, path)
    assert str(info.value) == (
        f"Snapshot {str(path)!r} does not match the model's keys: 1 missing (in the model, "
        "not in the file): ['0.bias']; 2 unexpected (in the file, not in the model): "
        "['2.bias', '2.weight']. Load it into the architecture it was saved from, or pass "
        "strict=False to load the common keys"
    )


def test_long_key_lists_are_truncated(tmp_path: Path) -> None:
    state = {f"w{i}": torch.zeros(1) for i in range(8)}
    path = save_snapshot(StandInAverager(state), tmp_path / "s.safetensors")
    with pytest.raises(ModelMismatchError) as info:
        load_snapshot(nn.Linear(1, 1), path)
    assert (
        "8 unexpected (in the file, not in the model): ['w0', 'w1', 'w2', 'w3', 'w4', "
        "... and 3 more]" in str(info.value)
    )


def test_non_strict_loads_common_keys(
    tmp_path: Path, averager: StandInAverager, caplog: pytest.LogCaptureFixture
) -> None:
    del averager.state["2.bias"]
    path = save_snapshot(averager, tmp_path / "s.safetensors")
    model = make_net(seed=7)
    old_bias = model[2].bias.clone()
    load_snapshot(model, path, strict=False)
    assert torch.equal(model[2].weight, averager.state["2.weight"])
    assert torch.equal(model[2].bias, old_bias)
    assert "1 model keys missing from the file ['2.bias']" in caplog.text


def test_shape_mismatch_is_named_even_when_not_strict(tmp_path: Path) -> None:
    path = save_snapshot(StandInAverager(make_net(hidden=8).state_dict()), tmp_path / "s.st")
    with pytest.raises(ModelMismatchError) as info:
        load_snapshot(make_net(hidden=6), path, strict=False)
    assert str(info.value).startswith(
        f"Snapshot {str(path)!r} has 7 tensor(s) whose shape differs from the model's: "
        "'0.bias': file (8,) vs model (6,); '0.weight': file (8, 4) vs model (6, 4); "
    )
    assert str(info.value).endswith(
        "; ... and 2 more. Load it into the architecture it was saved from"
    )


def test_pickle_is_rejected_as_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(make_net().state_dict(), path)
    expected = (
        f"File {str(path)!r} is not a valid safetensors file (Error while deserializing "
        "header: header too large): snapshots are safetensors files written by "
        "ema_core.snapshot.save_snapshot or downloaded from emaboard; torch.save/pickle "
        "checkpoints are not accepted"
    )
    with pytest.raises(SnapshotFormatError, match=re.escape(expected)):
        load_snapshot(make_net(), path)
    with pytest.raises(SnapshotFormatError, match=re.escape(expected)):
        read_snapshot_metadata(path)


def test_truncated_file_is_rejected(tmp_path: Path, averager: StandInAverager) -> None:
    path = save_snapshot(averager, tmp_path / "s.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SnapshotFormatError, match="is not a valid safetensors file"):
        load_snapshot(make_net(), path)
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)  # header promises 16 bytes: none
    with pytest.raises(SnapshotFormatError, match="is not a valid safetensors file"):
        load_snapshot(make_net(), path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"Snapshot file {str(path)!r} does not exist")
    ):
        load_snapshot(make_net(), path)
    with pytest.raises(FileNotFoundError):
        read_snapshot_metadata(path)


def test_bad_metrics_and_metadata_are_rejected(tmp_path: Path, averager: StandInAverager) -> None:
    with pytest.raises(
        TypeError,
        match=re.escape("Invalid metric 'accuracy': 'high': expected a str name and a float value"),
    ):
        snapshot_metadata(averager, metrics={"accuracy": "high"})  # type: ignore[dict-item]
    with pytest.raises(
        TypeError,
        match=re.escape(
            "Invalid metadata entry 'step': 3: safetensors metadata maps str to str; encode other "
            "values as text (e.g. json.dumps)"
        ),
    ):
        write_snapshot(snapshot_state(averager), {"step": 3}, tmp_path / "s")  # type: ignore[dict-item]
    with pytest.raises(
        SnapshotFormatError,
        match=re.escape("Invalid snapshot metrics '[1, 2]': expected a JSON object of numbers"),
    ):
        snapshot_metrics({"metrics": "[1, 2]"})


def test_colliding_model_keys_are_rejected(tmp_path: Path, averager: StandInAverager) -> None:
    path = save_snapshot(averager, tmp_path / "s.safetensors")
    model = nn.Module()
    model.module = make_net()
    model.add_module("0", nn.Linear(4, 8))  # "0.weight" and "module.0.weight" collide
    with pytest.raises(
        ModelMismatchError,
        match=re.escape(
            "Model keys 'module.0.weight' and '0.weight' are both '0.weight' once wrapper "
            "prefixes are stripped: load into the unwrapped model instead"
        ),
    ):
        load_snapshot(model, path)


def test_parameter_count_reported_by_the_averager_wins(tmp_path: Path) -> None:
    class Counting(StandInAverager):
        def averager_info(self, name: str | None = None) -> dict[str, str | int | float]:
            return {**super().averager_info(name), "parameter_count": 70}

    averager = Counting(make_net().state_dict())
    assert snapshot_metadata(averager)["parameter_count"] == "70"
