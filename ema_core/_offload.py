"""Shadows in host memory for a model on a GPU: pinned staging, a side stream, a worker (private).

With ``device="cpu"`` and a CUDA model an update must not wait for the GPU. Each update:

1. on a side stream that first waits for the current stream (whose last work is the
   optimizer step), the live tensors are copied into a pinned host buffer with
   ``non_blocking=True`` and an event is recorded;
2. a worker thread waits for that event and lerps the host shadows from the staged copy
   (CPU kernels, which release the GIL);
3. ``update()`` returns at once: the GPU runs the next forward and backward while the copy
   and the CPU lerp proceed (NeMo's ``EMAOptimizer`` and torchtitan overlap the same way).

Fences: the copy reads the parameters that the next optimizer step overwrites, so a global
``Optimizer`` step pre-hook makes the current stream wait for the copy's event (a device-side
wait, no host sync). Every read or write of the shadows (statistics, swap-in, ``state_dict``,
snapshots) and the next update first join the worker, which re-raises its errors. Statistics
steps run synchronously. On a CPU model (tests) the same pipeline runs with plain copies and
no stream.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ema_core._shadow_groups import Group, Slot
from ema_core._shadow_specs import Spec

__all__ = ["OffloadedGroup", "Offloader", "wants_offload"]

_EXECUTOR: ThreadPoolExecutor | None = None
_OFFLOADERS: weakref.WeakSet[Offloader] = weakref.WeakSet()
_HOOK: Any = None


def wants_offload(live_device: torch.device, shadow_device: torch.device) -> bool:
    """Whether shadows on ``shadow_device`` of tensors on ``live_device`` use the pipeline."""
    return shadow_device.type == "cpu" and live_device.type == "cuda"


def _fence_all(optimizer: Any, args: Any, kwargs: Any) -> None:
    for offloader in list(_OFFLOADERS):
        offloader.fence()


class Offloader:
    """The side stream, event and worker jobs of one averager's offloaded shadows.

    Args:
        device: The live tensors' device (CUDA; CPU runs the pipeline without a stream).
    """

    def __init__(self, device: torch.device) -> None:
        global _EXECUTOR, _HOOK
        self.device = device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None  # type: ignore[no-untyped-call]
        self.event = torch.cuda.Event() if self.cuda else None  # type: ignore[no-untyped-call]
        self.jobs: list[Future[None]] = []
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ema-offload")
        if _HOOK is None:
            _HOOK = register_optimizer_step_pre_hook(_fence_all)
        _OFFLOADERS.add(self)

    def empty(self, numel: int, dtype: torch.dtype) -> Tensor:
        """A host buffer, pinned when the live tensors are on CUDA."""
        return torch.empty(numel, dtype=dtype, pin_memory=self.cuda)

    def copy(self, dst: list[Tensor], src: list[Tensor]) -> None:
        """Copy device ``src`` into host ``dst`` behind the current stream's work, without
        waiting for it (call :meth:`join` first if a job still reads ``dst``)."""
        if not dst:
            return
        if self.stream is None or self.event is None:
            torch._foreach_copy_(dst, src)
            return
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            torch._foreach_copy_(dst, src, non_blocking=True)
            self.event.record(self.stream)

    def wait_copies(self) -> None:
        """Block until the copies issued so far have landed in host memory."""
        if self.event is not None:
            self.event.synchronize()

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker thread once the copies issued so far have landed."""
        assert _EXECUTOR is not None
        self.jobs.append(_EXECUTOR.submit(self._after_copies, fn))

    def _after_copies(self, fn: Callable[[], None]) -> None:
        self.wait_copies()
        with torch.no_grad():
            fn()

    def join(self) -> None:
        """Wait for every job and copy; re-raise the first job's error."""
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job.result()
        self.wait_copies()

    def fence(self) -> None:
        """Make the current stream wait for the last copy (before parameters are overwritten)."""
        if self.event is not None:
            torch.cuda.current_stream(self.device).wait_event(self.event)


class OffloadedGroup(Group):
    """A :class:`Group` whose shadows live in (pinned) host memory and whose kernels read a
    host copy of the live tensors, staged asynchronously by an :class:`Offloader`."""

    def __init__(self, specs: list[Spec], live: list[Tensor], n_shadows: int,
                 dtype: torch.dtype, offloader: Offloader) -> None:
        self.offloader = offloader
        self.staging: Tensor | None = None
        self.device_live: list[Tensor] = []
        super().__init__(specs, live, n_shadows, dtype, torch.device("cpu"),
                         pin_memory=offloader.cuda)

    def _readable(self, real: list[Tensor]) -> list[Tensor]:
        """Host views of a staging buffer, filled now (synchronously: binding is rare)."""
        self.offloader.join()
        self.device_live = real
        numel = sum(t.numel() for t in real)
        if self.staging is None or self.staging.numel() != numel:
            self.staging = self.offloader.empty(numel, real[0].dtype if real else self.flat.dtype)
        views, offset = [], 0
        for t in real:
            views.append(self.staging[offset : offset + t.numel()].view(t.shape))
            offset += t.numel()
        with torch.no_grad():
            torch._foreach_copy_(views, real)
        return views

    def lerp_(self, weights: Sequence[float], foreach: bool = True) -> None:
        """Stage the live tensors and lerp on the worker; returns without waiting."""
        self.offloader.copy(self.live, self.device_live)
        self.offloader.submit(functools.partial(Group.lerp_, self, list(weights), foreach))

    def stats_(self, weights: Sequence[float] | None) -> tuple[list[Tensor], list[Slot]]:
        """As :meth:`Group.stats_`, on a freshly staged copy, synchronously."""
        self.offloader.join()
        self.offloader.copy(self.live, self.device_live)
        self.offloader.wait_copies()
        return super().stats_(weights)

    def join(self) -> None:
        self.offloader.join()
