"""Run a module under ``torchrun --standalone`` (free rendezvous port, gloo on CPU) for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def torchrun(
    target: str, *args: str, module: bool = True, nproc: int = 2, timeout_s: float = 240.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=nproc [-m] target args``.

    ``target`` is a module name (``module=True``) or a script path. Runs from the repository
    root with one torch thread per process (as torchrun's default); raises AssertionError with
    both output streams when a rank fails.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *(["-m"] if module else []), target, *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env=full_env, check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n--- stdout ---\n"
            f"{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc
