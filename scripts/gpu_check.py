"""scripts/gpu-check: run the CUDA tests and benchmarks and print a summary (see the wrapper).

Each step runs in a subprocess with its own time limit (all together under 8 minutes). A CUDA
test that is skipped while a GPU is present counts as a failure: nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_GPU, FAILED, OK = 2, 1, 0
CUDA_TESTS = ["tests/ema_core/test_offload_cuda.py", "tests/ema_core/test_ema.py",
              "tests/ema_core/test_posthoc_ema.py"]  # -m cuda


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout_s: float
    junit: Path | None = None


@dataclass
class Result:
    step: Step
    status: str  # "ok", "FAILED (exit N)", "TIMEOUT", "FAILED (skipped tests)"
    seconds: float
    output: str
    detail: str = ""


def junit_counts(path: Path) -> tuple[dict[str, int], list[str]]:
    """(counts of tests, failures, errors, skipped; skip reasons) from a pytest JUnit file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites)
              for k in ("tests", "failures", "errors", "skipped")}
    reasons = [f"{case.get('classname')}::{case.get('name')}: {skip.get('message', '')}"
               for case in root.iter("testcase") for skip in case.iter("skipped")]
    return counts, reasons


def steps(python: str, cpu: bool, work: Path, gpus: int) -> list[Step]:
    device = "cpu" if cpu else "cuda"
    nproc = 2 if cpu else max(1, min(2, gpus))
    return [
        Step("CUDA tests (pytest -m cuda)",
             [python, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
              f"--junitxml={work / 'cuda.xml'}", *CUDA_TESTS], 240, work / "cuda.xml"),
        Step("EMA update vs the lerp_ floor (bench/ema_update.py)",
             [python, "bench/ema_update.py", "--device", device]
             + (["--quick", "--only", "transformer-small", "--repeats", "1"] if cpu
                else ["--repeats", "9"]), 120),
        Step("step time, offloaded shadows (bench/offload.py)",
             [python, "-m", "bench.offload", "--device", device]
             + (["--steps", "4", "--rounds", "1", "--depth", "2"] if cpu else []), 60),
        Step(f"statistics all-reduce, {nproc} ranks (bench/distributed_stats.py)",
             [python, "-m", "torch.distributed.run", "--standalone",
              f"--nproc_per_node={nproc}", "-m", "bench.distributed_stats", "--device", device,
              "--repeats", "3" if cpu else "15"], 60),
    ]


def run(step: Step, cpu: bool) -> Result:
    start = time.monotonic()
    try:
        proc = subprocess.run(step.cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=step.timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return Result(step, "TIMEOUT", time.monotonic() - start, out)
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    detail = ""
    if step.junit is not None and step.junit.exists():
        counts, reasons = junit_counts(step.junit)
        detail = (f"{counts['tests']} tests: {counts['failures']} failed, {counts['errors']} "
                  f"errors, {counts['skipped']} skipped")
        if reasons:
            detail += "\n" + "\n".join(f"    skipped: {r}" for r in reasons)
        if counts["skipped"] and not cpu and status == "ok":
            status = "FAILED (skipped tests)"  # a GPU is present: nothing may be skipped
    return Result(step, status, seconds, output, detail)


def tables(output: str) -> str:
    """The markdown table and header lines a benchmark printed."""
    keep = [line for line in output.splitlines()
            if line.startswith(("|", "torch ")) or "all_reduce" in line]
    return "\n".join(keep)


def gpu_count() -> tuple[int, str]:
    """(CUDA devices torch sees, a line saying what this machine has)."""
    import torch

    cuda = torch.version.cuda
    build = f"torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU-only build'})"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return torch.cuda.device_count(), f"{build}: {names}"
    smi = shutil.which("nvidia-smi")
    if smi:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False).stdout
        if listed.strip():
            return -1, f"{build}: nvidia-smi lists {listed.strip()!r} but torch sees no CUDA device"
    return 0, f"{build}: no CUDA device"


def main() -> int:
    parser = argparse.ArgumentParser(description="CUDA tests and benchmarks, with a summary")
    parser.add_argument("--cpu", action="store_true",
                        help="run every step on CPU with small sizes (checks this script)")
    args = parser.parse_args()
    gpus, machine = gpu_count()
    print(f"gpu-check: {machine}", flush=True)
    if gpus < 0:
        print("gpu-check: FAILED: install a CUDA build of torch for this driver", flush=True)
        return FAILED
    if gpus == 0 and not args.cpu:
        print("gpu-check: nothing run (no GPU here; `scripts/gpu-check --cpu` checks the "
              "script itself on CPU)", flush=True)
        return NO_GPU
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for step in steps(sys.executable, args.cpu, Path(work), gpus):
            print(f"gpu-check: {step.name} ...", flush=True)
            results.append(run(step, args.cpu))
            print(f"gpu-check:   {results[-1].status} in {results[-1].seconds:.0f} s", flush=True)
    print("\n==== gpu-check summary" + (" (--cpu: small sizes, no GPU)" if args.cpu else "")
          + f" ====\n{machine}")
    if importlib.util.find_spec("timm") is None:
        print("timm is not installed: no ModelEmaV3 row (pip install timm to compare)")
    for r in results:
        print(f"\n## {r.step.name}: {r.status} ({r.seconds:.0f} s)")
        if r.detail:
            print(r.detail)
        shown = tables(r.output) if r.step.junit is None else ""
        if shown:
            print(shown)
        if r.status != "ok":
            print("--- last output ---\n" + r.output[-3000:])
    failed = [r for r in results if r.status != "ok"]
    total = time.monotonic() - started
    print(f"\ngpu-check: {len(results) - len(failed)}/{len(results)} steps ok in {total:.0f} s")
    return FAILED if failed else OK


if __name__ == "__main__":
    sys.exit(main())
