"""Flat shadow storage shared by EMA and SWA (private).

Each group holds the averaged tensors that share a (live device, live real dtype) in one flat
buffer per shadow, ``flat[k]``, with per-tensor views; parameters come first, then the
averaged float buffers. A complex tensor is averaged through its real view
(``torch.view_as_real``: (…, 2) real and imaginary parts), which is exactly the complex lerp
(the weights are real), as ``torch.optim.swa_utils.AveragedModel`` averages it. Copied
tensors (integer buffers, or float buffers when ``average_buffers=False``) are kept as one
clone per shadow.

Updates are one ``torch._foreach_lerp_`` over all shadows of a group (lists concatenated,
one weight per shadow). When the live dtype or device differs from the shadow's (bf16 model,
fp32 shadow; GPU model, CPU shadow) and on stats steps, the group is processed in blocks of at
most ``BLOCK_NUMEL`` elements through a small reused scratch buffer, so each live element is
read from memory once and every intermediate stays in cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ema_core._distributed import local_tensor
from ema_core._shadow_specs import Spec
from ema_core.exceptions import ModelMismatchError

BLOCK_NUMEL = 1 << 17  # 512 KiB of fp32: live, scratch and shadow blocks fit in L2 together


@dataclass
class Block:
    """A contiguous range [start, stop) of a group's flat buffer and the live slices it holds."""

    start: int
    stop: int
    is_param: bool
    live: list[Tensor]  # live slices, each a 1-D slice or a whole non-contiguous tensor
    flat_items: list[tuple[int, int]]  # (offset in block, numel) per item
    item_tensor: list[int]  # index (within the group) of the tensor each item belongs to
    # views set by Group.bind() into the group's scratch buffer and shadow buffers
    scratch: list[Tensor] = field(default_factory=list)  # scratch shaped like ``live``
    scratch_flat: Tensor = field(default_factory=lambda: torch.empty(0))  # (stop - start,)
    scratch_items: list[Tensor] = field(default_factory=list)  # 1-D, one per item
    shadow_flat: list[Tensor] = field(default_factory=list)  # per shadow k: (stop - start,)
    shadow_items: list[list[Tensor]] = field(default_factory=list)  # per shadow k, 1-D items
    shadow_shaped: list[list[Tensor]] = field(default_factory=list)  # per shadow k, like live


def as_real(t: Tensor) -> Tensor:
    """``t`` itself, or for a complex tensor its (…, 2) real view (shares storage)."""
    return torch.view_as_real(t) if t.is_complex() else t


class Group:
    """Averaged tensors of one (live device, live dtype), one flat buffer per shadow.

    ``live`` may hold DTensors (FSDP2): the group then stores and updates their local shards.
    """

    def __init__(
        self, specs: list[Spec], live: list[Tensor], n_shadows: int,
        dtype: torch.dtype, device: torch.device, pin_memory: bool = False,
    ) -> None:
        self.specs = specs
        real = [as_real(local_tensor(t)) for t in live]
        self.numels = [t.numel() for t in real]
        self.offsets = [0]
        for n in self.numels:
            self.offsets.append(self.offsets[-1] + n)
        self.n_params = sum(s.is_param for s in specs)
        self.flat = torch.empty((n_shadows, self.offsets[-1]), dtype=dtype, device=device,
                                pin_memory=pin_memory)
        self.views = [
            [self.flat[k, o : o + n].view(t.shape)
             for t, o, n in zip(real, self.offsets[:-1], self.numels, strict=True)]
            for k in range(n_shadows)
        ]
        self.all_views = [v for views in self.views for v in views]
        self.scratch = torch.empty(0, dtype=dtype, device=device)
        self.bind(live)
        with torch.no_grad():
            for views in self.views:
                torch._foreach_copy_(views, self.live)

    def bind(self, live: list[Tensor]) -> None:
        """Point the group at the model's live tensors and rebuild the block plan.

        Raises:
            ModelMismatchError: a local shard's shape differs from the shadow's (the model
                was sharded differently).
        """
        local = [local_tensor(t) for t in live]  # detached; a DTensor's local shard
        wrong = [f"{s.key}: shadow shard {tuple(v.shape)} vs live shard {tuple(t.shape)}"
                 for s, v, t in zip(self.specs, self.views[0], local, strict=True)
                 if v.shape != as_real(t).shape]
        if wrong:
            raise ModelMismatchError(
                f"Model is sharded differently from the shadow: {wrong[:5]}; update with the "
                "model sharded as at construction (same mesh and placements)"
            )
        self.sources = live
        self.detached = local  # as the model holds them (maybe complex)
        self.live = self._readable([as_real(t) for t in self.detached])  # what is averaged
        self.all_live = self.live * len(self.views)
        self.cast = any(
            t.dtype != self.flat.dtype or t.device != self.flat.device for t in self.live
        )
        self.blocks = _plan_blocks(self.live, self.numels, self.offsets, self.n_params)
        need = max((b.stop - b.start for b in self.blocks), default=0)
        if self.scratch.numel() < need:
            self.scratch = torch.empty(need, dtype=self.flat.dtype, device=self.flat.device)
        for block in self.blocks:
            self._attach_views(block)

    def _readable(self, real: list[Tensor]) -> list[Tensor]:
        """The tensors the kernels read: the live (real views) themselves here; an offloaded
        group reads a host copy (:mod:`ema_core._offload`)."""
        return real

    def join(self) -> None:
        """Wait for background work on this group's shadows (none here)."""

    def _attach_views(self, block: Block) -> None:
        block.scratch_flat = self.scratch[: block.stop - block.start]
        block.scratch_items = [block.scratch_flat[o : o + n] for o, n in block.flat_items]
        block.scratch = [
            item.view(v.shape) for item, v in zip(block.scratch_items, block.live, strict=True)
        ]
        block.shadow_flat = [self.flat[k, block.start : block.stop] for k in range(len(self.views))]
        block.shadow_items = [
            [shadow[o : o + n] for o, n in block.flat_items] for shadow in block.shadow_flat
        ]
        block.shadow_shaped = [
            [item.view(v.shape) for item, v in zip(items, block.live, strict=True)]
            for items in block.shadow_items
        ]

    def shadow_tensors(self, k: int) -> list[Tensor]:
        """Shadow ``k``'s tensors as the model holds them (complex ones as complex views)."""
        return [torch.view_as_complex(v) if s.is_complex else v
                for s, v in zip(self.specs, self.views[k], strict=True)]

    def lerp_(self, weights: Sequence[float], foreach: bool = True) -> None:
        """shadow_k ← lerp(shadow_k, live, weights[k]) for every shadow k of the group."""
        if not foreach:
            for views, w in zip(self.views, weights, strict=True):
                for s, x in zip(views, self.live, strict=True):
                    s.lerp_(x.to(device=s.device, dtype=s.dtype), w)
        elif self.cast:
            for block in self.blocks:
                self.block_lerp_(block, weights)
        elif len(set(weights)) == 1:
            torch._foreach_lerp_(self.all_views, self.all_live, weights[0])
        else:
            ws = [w for w, views in zip(weights, self.views, strict=True) for _ in views]
            torch._foreach_lerp_(self.all_views, self.all_live, ws)

    def block_lerp_(self, block: Block, weights: Sequence[float]) -> Tensor:
        """Lerp one block of every shadow through the scratch; returns the scratch (= live)."""
        torch._foreach_copy_(block.scratch, block.live)
        for shadow, w in zip(block.shadow_flat, weights, strict=True):
            shadow.lerp_(block.scratch_flat, w)
        return block.scratch_flat

    def stats_(self, weights: Sequence[float] | None) -> tuple[list[Tensor], list[Slot]]:
        """Optionally update, then measure live, live − shadow_k and shadow_k per item.

        Each block is copied into the cache-resident scratch once per shadow, so the stats
        step reads live and shadow from memory about as often as a plain update.

        Returns:
            ``(values, slots)``: 0-d tensors on the group's device, and for each the
            ``(tensor index in group, slot, is_square)`` it belongs to; slot 0 is live,
            1 + 2k the drift of shadow k after the update, 2 + 2k shadow k itself.
        """
        values: list[Tensor] = []
        slots: list[Slot] = []
        for block in self.blocks:
            if not block.is_param:
                if weights is not None:
                    self.block_lerp_(block, weights)
                continue
            if self._direct(block):
                self._stats_direct(block, weights, values, slots)
                continue
            for k, shadow in enumerate(block.shadow_flat):
                if weights is not None and not self.cast:
                    # lerp straight from live (one memory read), then copy it from cache
                    torch._foreach_lerp_(block.shadow_shaped[k], block.live, weights[k])
                    torch._foreach_copy_(block.scratch, block.live)
                else:
                    torch._foreach_copy_(block.scratch, block.live)
                    if weights is not None:
                        shadow.lerp_(block.scratch_flat, weights[k])
                if k == 0:
                    self._measure(block, block.scratch_items, 0, values, slots)
                block.scratch_flat.sub_(shadow)  # live − shadow after the update, in cache
                self._measure(block, block.scratch_items, 1 + 2 * k, values, slots)
                self._measure(block, block.shadow_items[k], 2 + 2 * k, values, slots)
        return values, slots

    def _direct(self, block: Block) -> bool:
        """A block that is one contiguous slice of one same-dtype live tensor."""
        return (
            len(block.live) == 1 and not self.cast and block.live[0].dim() == 1
            and self.flat.dtype in (torch.float32, torch.float64)
        )

    def _stats_direct(
        self, block: Block, weights: Sequence[float] | None, values: list[Tensor],
        slots: list[Slot],
    ) -> None:
        """Single-slice block: lerp from live, then every measurement from cache."""
        live, i = block.live[0], block.item_tensor[0]
        values.append(torch.dot(live, live))
        slots.append((i, 0, True))
        for k, shadow in enumerate(block.shadow_flat):
            if weights is not None:
                shadow.lerp_(live, weights[k])
            torch.sub(live, shadow, out=block.scratch_flat)
            drift = block.scratch_flat
            values.extend((torch.dot(drift, drift), torch.dot(shadow, shadow)))
            slots.extend(((i, 1 + 2 * k, True), (i, 2 + 2 * k, True)))

    def _measure(
        self, block: Block, items: list[Tensor], slot: int, values: list[Tensor],
        slots: list[Slot],
    ) -> None:
        """Append ‖item‖² (one dot: 2× faster than a norm) or ‖item‖ per item.

        Half-precision shadows (an explicit ``shadow_dtype``) are measured in fp32: an fp16
        norm overflows to inf above 65 504 and a bf16 one keeps 3 digits.
        """
        if len(items) == 1 and self.flat.dtype in (torch.float32, torch.float64):
            values.append(torch.dot(items[0], items[0]))
            slots.append((block.item_tensor[0], slot, True))
        elif self.flat.dtype in (torch.float16, torch.bfloat16):
            values.extend(torch.linalg.vector_norm(t, dtype=torch.float32) for t in items)
            slots.extend((i, slot, False) for i in block.item_tensor)
        else:
            values.extend(torch._foreach_norm(items))
            slots.extend((i, slot, False) for i in block.item_tensor)


Slot = tuple[int, int, bool]


def _plan_blocks(
    live: list[Tensor], numels: list[int], offsets: list[int], n_params: int
) -> list[Block]:
    """Cut the group into blocks of at most BLOCK_NUMEL elements (one per big odd tensor)."""
    blocks: list[Block] = []
    current: Block | None = None
    for i, (t, n) in enumerate(zip(live, numels, strict=True)):
        is_param = i < n_params
        pieces = _pieces(t, n)
        for a, b, view in pieces:
            length = b - a
            if (current is None or current.is_param != is_param
                    or current.stop - current.start + length > BLOCK_NUMEL):
                current = Block(offsets[i] + a, offsets[i] + a, is_param, [], [], [], [])
                blocks.append(current)
            current.flat_items.append((current.stop - current.start, length))
            current.live.append(view)
            current.item_tensor.append(i)
            current.stop += length
    return blocks


def _pieces(t: Tensor, n: int) -> list[tuple[int, int, Tensor]]:
    """Split a contiguous tensor into BLOCK_NUMEL slices; keep a non-contiguous one whole."""
    if not t.is_contiguous():
        return [(0, n, t)]
    flat = t.view(-1)
    step = BLOCK_NUMEL
    return [(a, min(a + step, n), flat[a : a + step]) for a in range(0, n, step)]
