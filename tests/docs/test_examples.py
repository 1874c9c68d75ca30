"""The multi-GPU examples of docs/distributed.md run on CPU under torchrun (2 processes, gloo)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from ema_core.snapshot import load_snapshot, read_snapshot_metadata
from tests.utils.torchrun import ROOT, torchrun

pytestmark = pytest.mark.distributed
EXAMPLES = ROOT / "docs" / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str) -> str:
    # torchrun runs a script path as well as a module: the way the docs show it
    return torchrun(str(EXAMPLES / script), *args, module=False).stdout


def test_ddp_example_trains_evaluates_and_snapshots_once(tmp_path: Path) -> None:
    out = _run("ddp_ema.py", "--steps", "100", "--out", str(tmp_path))
    line = re.search(r"step 100: live ([\d.]+), ema_0.9 ([\d.]+), ema_0.98 ([\d.]+)", out)
    assert line, out
    assert out.count("snapshot:") == 1  # printed by rank 0 only
    model = _example("ddp_ema").build_model()
    meta = load_snapshot(model, tmp_path / "ema_0.98.safetensors")
    assert (meta["averager"], meta["step"]) == ("ema_0.98", "100")


def test_fsdp_example_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    first = _run("fsdp2_ema.py", "--steps", "50", "--out", str(tmp_path))
    assert re.search(r"step 50: loss [\d.]+, rel drift ema_0.99 [\d.]+, ema_0.999", first), first
    resumed = _run("fsdp2_ema.py", "--steps", "50", "--out", str(tmp_path), "--resume")
    assert "step 100: loss" in resumed and "step 50:" not in resumed, resumed
    assert re.search(r"accuracy: live [\d.]+, ema_0.99 [\d.]+, ema_0.999 [\d.]+", resumed)
    path = tmp_path / "ema_0.999.safetensors"
    assert read_snapshot_metadata(path)["step"] == "100"
    load_snapshot(_example("fsdp2_ema").Net(), path)  # the full, gathered model
