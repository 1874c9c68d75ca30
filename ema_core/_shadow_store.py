"""ShadowStore: every shadow of one averager object, bound to a live model (private)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ema_core._binding import Binding
from ema_core._distributed import (
    ShardLayout,
    StatsReducer,
    local_tensor,
    shard_layout,
    wrap,
)
from ema_core._offload import OffloadedGroup, Offloader, wants_offload
from ema_core._shadow_groups import Group, Slot, as_real
from ema_core._shadow_specs import (
    Spec,
    build_specs,
    check_match,
    default_shadow_dtype,
    gather_live,
)


@dataclass
class RawStats:
    """Per-tensor squared norms (Python floats) from one stats pass, parameters only.

    A parameter tied under several keys (shared embeddings) appears once, under its first key.

    ``drift_sq[k][i]`` is ‖live_i − shadow_k,i‖² after the update; ``shadow_sq[k][i]`` is
    ‖shadow_k,i‖²; ``live_sq[i]`` is ‖live_i‖², all for parameter ``keys[i]``.
    """

    keys: list[str]
    live_sq: list[float]
    drift_sq: list[list[float]]
    shadow_sq: list[list[float]]


class ShadowStore:
    """``n_shadows`` shadows of a model in flat per-(device, dtype) storage.

    For a sharded model (DTensor parameters, FSDP2) the storage holds each rank's local
    shards; :meth:`shadow_tensors` returns them, :meth:`global_shadow` as DTensors.
    """

    def __init__(
        self, model: nn.Module, n_shadows: int, *, average_buffers: bool,
        shadow_dtype: torch.dtype | None, device: torch.device | str | None,
    ) -> None:
        live = gather_live(model)
        self.specs = build_specs(live, average_buffers)
        self.layouts: dict[str, ShardLayout | None] = {k: shard_layout(v) for k, v in live.items()}
        self.sharded = any(lay is not None for lay in self.layouts.values())
        self._reducer: StatsReducer | None = None
        self.n_shadows = n_shadows
        by_kind: dict[tuple[torch.device, torch.dtype], list[Spec]] = {}
        averaged = [s for s in self.specs if s.averaged]
        for spec in sorted(averaged, key=lambda s: not s.is_param):  # stable: params first
            t = as_real(local_tensor(live[spec.key]))
            by_kind.setdefault((t.device, t.dtype), []).append(spec)
        dev = None if device is None else torch.device(device)
        self.offloader: Offloader | None = None
        with torch.no_grad():
            self.groups = [
                self._group(specs, [live[s.key] for s in specs], n_shadows,
                            shadow_dtype or default_shadow_dtype(dtype), live_dev, dev)
                for (live_dev, dtype), specs in by_kind.items()
            ]
            self.copied_specs = [s for s in self.specs if not s.averaged]
            pin = self.offloader is not None and self.offloader.cuda
            self.copied = [
                [local_tensor(live[s.key]).to(device=dev, copy=True) for s in self.copied_specs]
                for _ in range(n_shadows)
            ]
            if pin:  # filled by non-blocking copies: page-locked
                self.copied = [[t.pin_memory() for t in ts] for ts in self.copied]
        self.model: nn.Module = model
        self._bind_copied(model, live)
        self.swap_spare: list[Tensor] | None = None
        self.swap_active = False  # set by swap_in while swap_spare holds the live weights

    def _group(self, specs: list[Spec], live: list[Tensor], n_shadows: int, dtype: torch.dtype,
               live_dev: torch.device, dev: torch.device | None) -> Group:
        if dev is None or not wants_offload(live_dev, dev):
            return Group(specs, live, n_shadows, dtype, dev or live_dev)
        if self.offloader is None:
            self.offloader = Offloader(live_dev)
        return OffloadedGroup(specs, live, n_shadows, dtype, self.offloader)

    def join(self) -> None:
        """Wait for background updates of offloaded shadows (re-raising their errors)."""
        if self.offloader is not None:
            self.offloader.join()

    def _bind_copied(self, model: nn.Module, live: dict[str, Tensor]) -> None:
        self.copied_sources = [live[s.key] for s in self.copied_specs]
        self.copied_live = [local_tensor(t) for t in self.copied_sources]
        self.all_copied = [t for ts in self.copied for t in ts]
        self.binding = Binding(model, [t for g in self.groups for t in g.sources]
                               + self.copied_sources)

    def bind(self, model: nn.Module) -> None:
        """Bind to ``model``'s tensors; cheap when it is the same model holding the same tensors.

        Re-binds when ``model`` is another object or now holds other tensors than when it was
        bound (``load_state_dict(assign=True)``, a re-assigned parameter, buffer or submodule,
        ``.to(device)``): see :class:`~ema_core._binding.Binding`.

        Raises:
            ModelMismatchError: keys or shapes differ from the shadow's.
        """
        if model is self.model and self.binding.unchanged():
            return
        self.join()
        live = gather_live(model)
        check_match(self.specs, live)
        for g in self.groups:
            g.bind([live[s.key] for s in g.specs])
        self.model = model
        self._bind_copied(model, live)
        self.swap_spare = None

    def live_sources(self) -> dict[str, Tensor]:
        """The bound model's tensors by key, as the model holds them (``nn.Parameter``s)."""
        by_key = {s.key: t for g in self.groups for s, t in zip(g.specs, g.sources, strict=True)}
        by_key.update(zip((s.key for s in self.copied_specs), self.copied_sources, strict=True))
        return by_key

    def live_tensors(self) -> list[Tensor]:
        """The bound live tensors in state-dict order (detached, sharing storage); offloaded
        copies of them are complete (the caller may overwrite them)."""
        self.join()
        by_key = {s.key: t for g in self.groups
                  for s, t in zip(g.specs, g.detached, strict=True)}
        by_key.update(zip((s.key for s in self.copied_specs), self.copied_live, strict=True))
        return [by_key[s.key] for s in self.specs]

    def shadow_tensors(self, k: int) -> dict[str, Tensor]:
        """Shadow ``k`` keyed like the model's state dict (the stored tensors, no copy; any
        background update of them finished)."""
        self.join()
        by_key = {s.key: v for g in self.groups
                  for s, v in zip(g.specs, g.shadow_tensors(k), strict=True)}
        by_key.update(zip((s.key for s in self.copied_specs), self.copied[k], strict=True))
        return {s.key: by_key[s.key] for s in self.specs}

    def global_shadow(self, k: int) -> dict[str, Tensor]:
        """Shadow ``k`` like ``model.state_dict()``: DTensors over the local shards (no copy)
        for sharded keys, the stored tensors for the others."""
        return {key: wrap(t, self.layouts[key]) for key, t in self.shadow_tensors(k).items()}

    def update_(self, weights: Sequence[float], *, foreach: bool = True) -> None:
        """shadow_k ← lerp(shadow_k, live, weights[k]); copied tensors are copied."""
        with torch.no_grad():
            self.join()  # a previous offloaded update no longer reads the staging buffers
            for g in self.groups:
                g.lerp_(weights, foreach)
            self.copy_buffers_()

    def copy_buffers_(self) -> None:
        """Copy the live copied tensors (e.g. ``num_batches_tracked``) into every shadow."""
        if not self.all_copied:
            return
        if self.offloader is not None and self.copied_live[0].device.type != "cpu":
            self.offloader.copy(self.all_copied, self.copied_live * self.n_shadows)
        else:
            torch._foreach_copy_(self.all_copied, self.copied_live * self.n_shadows)

    def capture_buffers_(self, k: int) -> None:
        """Copy the bound model's buffers (averaged and copied) into shadow ``k``."""
        self.join()
        with torch.no_grad():
            pairs = [(s, as_real(t)) for g in self.groups
                     for s, t in zip(g.views[k][g.n_params :], g.detached[g.n_params :],
                                     strict=True)]
            pairs += list(zip(self.copied[k], self.copied_live, strict=True))
            for shadow, live in pairs:
                shadow.copy_(live)

    def stats_(self, weights: Sequence[float] | None) -> RawStats:
        """Update (unless ``weights`` is None) and measure, one host transfer in all."""
        with torch.no_grad():
            parts, layouts = [], []
            for g in self.groups:
                values, slots = g.stats_(weights)
                if values:
                    parts.append(torch.stack(values).to(torch.float64))
                    layouts.append((g, slots))
            if weights is not None:
                self.copy_buffers_()
            if self.sharded:
                return self._reduce(parts, layouts)
            numbers = torch.cat([p.cpu() for p in parts]).tolist() if parts else []
        return self._decode(numbers, layouts)

    def _reduce(self, parts: list[Tensor], layouts: list[tuple[Group, list[Slot]]]) -> RawStats:
        """Per-tensor squared norms of every rank's shards, summed by one all_reduce."""
        params = [(g, i) for g in self.groups for i in range(g.n_params)]
        if self._reducer is None:
            self._reducer = StatsReducer([self.layouts[g.specs[i].key] for g, i in params])
        width = 1 + 2 * self.n_shadows
        sums = torch.zeros((len(params), width), dtype=torch.float64,
                           device=self._reducer.device)
        first, total = {}, 0
        for g in self.groups:
            first[id(g)], total = total, total + g.n_params
        for values, (g, slots) in zip(parts, layouts, strict=True):
            index = torch.tensor([(first[id(g)] + i) * width + slot for i, slot, _ in slots])
            squared = torch.tensor([sq for _, _, sq in slots], device=values.device)
            values = torch.where(squared, values, values * values)
            sums.view(-1).index_add_(0, index.to(sums.device), values.to(sums.device))
        numbers = self._reducer.all_reduce_(sums).tolist()
        raw = RawStats([], [], [[] for _ in range(self.n_shadows)],
                       [[] for _ in range(self.n_shadows)])
        seen: set[int] = set()
        for (g, i), row in zip(params, numbers, strict=True):
            if id(g.sources[i]) in seen:
                continue  # a tied parameter under a second key: count it once
            seen.add(id(g.sources[i]))
            raw.keys.append(g.specs[i].key)
            raw.live_sq.append(row[0])
            for k in range(self.n_shadows):
                raw.drift_sq[k].append(row[1 + 2 * k])
                raw.shadow_sq[k].append(row[2 + 2 * k])
        return raw

    def _decode(self, numbers: list[float], layouts: list[tuple[Group, list[Slot]]]) -> RawStats:
        n = self.n_shadows
        raw = RawStats([], [], [[] for _ in range(n)], [[] for _ in range(n)])
        pos = 0
        seen: set[int] = set()
        for g, slots in layouts:
            sums = [[0.0] * g.n_params for _ in range(1 + 2 * n)]
            for (i, slot, squared), v in zip(slots, numbers[pos : pos + len(slots)], strict=True):
                sums[slot][i] += v if squared else v * v
            pos += len(slots)
            for i, spec in enumerate(g.specs[: g.n_params]):
                if id(g.sources[i]) in seen:
                    continue  # a tied parameter under a second key: count it once, as
                seen.add(id(g.sources[i]))  # named_parameters() does
                raw.keys.append(spec.key)
                raw.live_sq.append(sums[0][i])
                for k in range(n):
                    raw.drift_sq[k].append(sums[1 + 2 * k][i])
                    raw.shadow_sq[k].append(sums[2 + 2 * k][i])
        return raw
