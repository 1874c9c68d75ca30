"""torch.distributed for the averagers (private): ranks, DTensor shards, the stats all-reduce.

Data-parallel (DDP) models hold plain tensors, identical on every rank: every rank keeps a
full shadow and needs no communication. Fully sharded (FSDP2, ``fully_shard``) models hold
``DTensor`` parameters: every rank keeps the shadow of its *local shard*
(``DTensor.to_local()``), updated with no communication, and global statistics come from one
``all_reduce`` of per-tensor squared norms (:class:`StatsReducer`). Shapes are never inferred
from a local shard: ``DTensor.from_local`` without ``shape=``/``stride=`` assumes even shards,
which is wrong (and deadlocks in the field) when the first dimension is not divisible by the
world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

try:  # torch.distributed is optional in some builds (e.g. older macOS wheels)
    from torch.distributed.tensor import DTensor, Replicate, distribute_tensor
except ImportError:  # pragma: no cover - depends on the torch build
    DTensor = None  # type: ignore[assignment,misc]

__all__ = [
    "ShardLayout", "StatsReducer", "data_ptr", "global_rank", "is_dtensor", "is_initialized",
    "local_piece", "local_tensor", "rank_zero_decides", "reshard", "shard_layout", "to_full",
    "wrap",
]


def is_initialized() -> bool:
    """Whether a default torch.distributed process group exists."""
    return dist.is_available() and dist.is_initialized()


def global_rank() -> int:
    """This process's global rank: the process group's, else ``$RANK`` (torchrun), else 0."""
    if is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def rank_zero_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (one broadcast: every rank must call it).

    Used where all ranks must take the same branch into a collective (a gathered snapshot)
    although each computed its own condition.
    """
    if not is_initialized():
        return flag
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor``."""
    return DTensor is not None and isinstance(t, DTensor)


def local_tensor(t: Tensor) -> Tensor:
    """The local shard of a DTensor (sharing its storage), else ``t``; detached either way."""
    if is_dtensor(t):
        with torch.no_grad():
            return t.to_local().detach()  # type: ignore[attr-defined,no-any-return]
    return t.detach()


def data_ptr(t: Tensor) -> int:
    """Address of ``t``'s data, of its local shard for a DTensor."""
    return int(t._local_tensor.data_ptr() if is_dtensor(t) else t.data_ptr())  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ShardLayout:
    """Where a DTensor's local shard sits: mesh, placements and the global shape and stride.

    Attributes:
        counted: whether this rank's piece enters global sums. Shards on every mesh
            dimension are disjoint pieces; on a ``Replicate`` dimension only coordinate 0
            counts, so a replicated value is summed once.
    """

    mesh: Any  # DeviceMesh
    placements: tuple[Any, ...]
    shape: torch.Size
    stride: tuple[int, ...]
    counted: bool


def shard_layout(t: Tensor) -> ShardLayout | None:
    """The layout of a DTensor (None for a plain tensor).

    Raises:
        ValueError: a ``Partial`` placement (pending reduction): no parameter has one.
    """
    if not is_dtensor(t):
        return None
    mesh, placements = t.device_mesh, tuple(t.placements)  # type: ignore[attr-defined]
    if any(p.is_partial() for p in placements):
        raise ValueError(
            f"DTensor with placements {placements}: a Partial placement is a pending "
            "reduction, not stored weights; average the model's parameters"
        )
    coords = mesh.get_coordinate() or [0] * mesh.ndim
    counted = all(c == 0 for c, p in zip(coords, placements, strict=True)
                  if isinstance(p, Replicate))
    return ShardLayout(mesh, placements, t.shape, tuple(t.stride()), counted)


def wrap(local: Tensor, layout: ShardLayout | None) -> Tensor:
    """A DTensor over ``local`` (no copy) with ``layout``'s global shape; ``local`` if None."""
    if layout is None:
        return local
    return DTensor.from_local(
        local, layout.mesh, layout.placements, run_check=False, shape=layout.shape,
        stride=layout.stride,
    )


def local_piece(src: Tensor, layout: ShardLayout | None) -> Tensor:
    """This rank's piece of ``src`` (a full tensor or a DTensor) under ``layout``.

    A full tensor held by every rank is cut locally (``distribute_tensor`` with
    ``src_data_rank=None``: no communication); a DTensor is redistributed if its placements
    differ (a collective).
    """
    if layout is None:
        return to_full(src) if is_dtensor(src) else src
    if is_dtensor(src):
        if tuple(src.placements) != layout.placements:  # type: ignore[attr-defined]
            src = src.redistribute(layout.mesh, layout.placements)  # type: ignore[attr-defined]
        return src.to_local()  # type: ignore[attr-defined,no-any-return]
    piece = distribute_tensor(src, layout.mesh, list(layout.placements), src_data_rank=None)
    return piece.to_local()


def to_full(t: Tensor) -> Tensor:
    """The full value of a DTensor (an all-gather: every rank must call it), else ``t``.

    The gather is waited for here: ``full_tensor`` may return an asynchronous result, and a
    rank that drops one unwaited can abort at process-group teardown.
    """
    if not is_dtensor(t):
        return t
    full = t.full_tensor()  # type: ignore[attr-defined]
    wait = getattr(full, "wait", None)  # functional collectives' AsyncCollectiveTensor
    return wait() if callable(wait) else full  # type: ignore[no-any-return]


def reshard(model: nn.Module) -> None:
    """Free FSDP2's unsharded parameters, so the next forward gathers the shards afresh.

    A root FSDP2 module keeps its parameters unsharded after a forward without backward;
    a forward after the shards were overwritten (swap-in) would use the stale copy.
    """
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - depends on the torch build
        return
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


class StatsReducer:
    """Sums per-tensor squared norms over the ranks of a sharded model: one ``all_reduce``.

    Args:
        layouts: one per averaged parameter, in the order of the stats vector (None for a
            plain tensor, which every rank holds whole: it is counted on rank 0 only).

    Raises:
        ValueError: the DTensors live on several device meshes, or on a multi-dimensional
            mesh that does not span the default process group.
    """

    def __init__(self, layouts: list[ShardLayout | None]) -> None:
        meshes: list[Any] = []
        for lay in layouts:
            if lay is not None and not any(lay.mesh == m for m in meshes):
                meshes.append(lay.mesh)  # equal meshes may be distinct objects
        if len(meshes) != 1:
            raise ValueError(
                f"Parameters on {len(meshes)} device meshes {meshes}: averaging statistics "
                "need every DTensor parameter on one mesh (one fully_shard mesh for the model)"
            )
        mesh = meshes[0]
        if mesh.ndim == 1:
            self.group = mesh.get_group()
        elif mesh.size() == dist.get_world_size():
            self.group = None  # the default group spans the mesh
        else:
            raise ValueError(
                f"A {mesh.ndim}-D device mesh of {mesh.size()} ranks in a world of "
                f"{dist.get_world_size()}: statistics support 1-D meshes and meshes that "
                "span the whole job"
            )
        self.device = (torch.device(mesh.device_type, torch.cuda.current_device())
                       if mesh.device_type == "cuda" else torch.device(mesh.device_type))
        first = dist.get_rank(self.group) == 0
        self.mask = torch.tensor(
            [float(first if lay is None else lay.counted) for lay in layouts],
            dtype=torch.float64, device=self.device,
        )

    def all_reduce_(self, sums: Tensor) -> Tensor:
        """Mask out replicas and sum ``sums`` (shape ``(P, S)``, float64) over all ranks."""
        sums.mul_(self.mask[:, None])
        dist.all_reduce(sums, group=self.group)
        return sums
