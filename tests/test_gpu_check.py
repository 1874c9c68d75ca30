"""scripts/gpu-check on a machine without a GPU: a clean report, exit status 2; its JUnit
reading. (On a GPU machine the script itself is the check: it runs for minutes.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run scripts/gpu-check")
def test_without_a_gpu_it_says_so_and_runs_nothing() -> None:
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(ROOT / "scripts" / "gpu-check")], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == gpu_check.NO_GPU, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"gpu-check: torch {torch.__version__} (CPU-only build): no CUDA device",
        "gpu-check: nothing run (no GPU here; `scripts/gpu-check --cpu` checks the script "
        "itself on CPU)",
    ]


def test_junit_skips_are_counted_with_their_reasons(tmp_path: Path) -> None:
    path = tmp_path / "cuda.xml"
    path.write_text(
        '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1">'
        '<testcase classname="tests.ema_core.test_offload_cuda" name="test_a"/>'
        '<testcase classname="tests.ema_core.test_offload_cuda" name="test_b">'
        '<skipped message="needs CUDA"/></testcase>'
        '<testcase classname="tests.ema_core.test_ema" name="test_c"/>'
        '</testsuite></testsuites>'
    )
    counts, reasons = gpu_check.junit_counts(path)
    assert counts == {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}
    assert reasons == ["tests.ema_core.test_offload_cuda::test_b: needs CUDA"]
    assert gpu_check.CUDA_TESTS and all((ROOT / p).exists() for p in gpu_check.CUDA_TESTS)
