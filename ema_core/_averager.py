"""Averager: the machinery EMA and SWA share (private base class)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ema_core._distributed import local_piece
from ema_core._keys import unwrap_model
from ema_core._shadow_store import ShadowStore
from ema_core.exceptions import StateDictError, UnknownAveragerError
from ema_core.stats import WeightStats, build_weight_stats

STATE_FORMAT = "ema_core.averager"
STATE_VERSION = 1


class Averager:
    """One or more named shadows of a model, updated together; see EMA and SWA."""

    kind = "averager"

    def __init__(
        self, model: nn.Module, names: Sequence[str], *, average_buffers: bool,
        shadow_dtype: torch.dtype | None, device: torch.device | str | None,
        foreach: bool, stats_every: int,
    ) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"Duplicate averager names {list(names)}: pass distinct decays")
        if shadow_dtype is not None and not shadow_dtype.is_floating_point:
            raise ValueError(
                f"Invalid shadow_dtype {shadow_dtype}: expected a floating-point dtype (complex "
                "tensors are averaged as their real and imaginary parts in that dtype)"
            )
        self._names = tuple(names)
        self._store = ShadowStore(
            model, len(names), average_buffers=average_buffers,
            shadow_dtype=shadow_dtype, device=device,
        )
        self.foreach = foreach
        self.step = 0
        self.stats_every = stats_every
        self.last_stats: WeightStats | None = None
        self._decays = [0.0] * len(names)

    @property
    def averager_names(self) -> tuple[str, ...]:
        """Stable averager names, one per shadow (e.g. ``("ema_0.999", "ema_0.9999")``)."""
        return self._names

    def synchronize(self) -> None:
        """Wait until shadows kept in host memory for a GPU model (``device="cpu"``) are
        updated; re-raise an error of that background update.

        Updates of such shadows run on a side stream and a worker thread. Every method that
        reads or writes the shadows waits by itself, and a ``torch.optim`` optimizer step waits
        (on the GPU, without blocking the host) for the copy of the live weights; call this
        only before changing the live weights some other way (``load_state_dict``, in-place
        edits). A no-op otherwise.
        """
        self._store.join()

    @property
    def sharded(self) -> bool:
        """Whether the model's parameters are DTensors (FSDP2): each rank's shadows hold its
        own shards, and statistics and snapshots are collectives every rank must join."""
        return self._store.sharded

    @property
    def stats_every(self) -> int:
        """Compute statistics on steps divisible by this (0 = never)."""
        return self._stats_every

    @stats_every.setter
    def stats_every(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Invalid stats_every {value!r}: expected an int >= 0 (0 = never)")
        self._stats_every = value

    @property
    def has_averaged(self) -> bool:
        """Whether the shadows hold an average yet (some update has written into them).

        False before that: the shadow is then a copy of the weights at construction, and
        evaluating it would score an average that does not exist.
        """
        raise NotImplementedError

    def _index(self, name: str | None) -> int:
        if name is None:
            return 0
        try:
            return self._names.index(name)
        except ValueError:
            raise UnknownAveragerError(
                f"Unknown averager {name!r}: expected one of {list(self._names)}"
            ) from None

    def get_decay(self, name: str | None = None) -> float:
        """Decay β applied by the latest update of ``name`` (default: the first averager).

        0.0 before the first update (the shadow is a copy of the live weights).

        Raises:
            UnknownAveragerError: ``name`` is not one of ``averager_names``.
        """
        return self._decays[self._index(name)]

    def shadow_state_dict(self, name: str | None = None) -> dict[str, Tensor]:
        """The shadow of ``name`` keyed like ``model.state_dict()`` (prefixes stripped).

        Values are the stored shadow tensors themselves (views into flat storage, no copy):
        parameters and buffers, float ones in the shadow dtype, integer ones as copied. For a
        sharded model (FSDP2) a sharded parameter's value is a DTensor with the parameter's
        global shape, mesh and placements over this rank's local shadow shard.

        Raises:
            UnknownAveragerError: ``name`` is not one of ``averager_names``.
        """
        return self._store.global_shadow(self._index(name))

    def averaged_model(self, name: str | None = None) -> nn.Module:
        """The averaged model of ``name`` as a module, like timm's ``ModelEmaV3.module``.

        A copy of the bound model's structure whose parameters and buffers *are* the shadow
        tensors (no copy of the weights: it follows later updates, in the shadow's dtype and
        device, e.g. fp32 for a bf16 model). Call it for evaluation or to save
        (``torch.save(m.state_dict())``, or :func:`~ema_core.snapshot.save_snapshot`). It is
        in eval mode with ``requires_grad`` off; do not train it (that would change the
        shadow). DDP and ``torch.compile`` wrappers are unwrapped; non-state tensors (caches)
        are deep-copied.

        Raises:
            UnknownAveragerError: ``name`` is not one of ``averager_names``.
            RuntimeError: the model is sharded (FSDP2): a deep copy of it would copy FSDP's
                state and hooks, not a model.
        """
        k = self._index(name)
        if self._store.sharded:
            raise RuntimeError(
                f"averaged_model({self._names[k]!r}) on a sharded (FSDP2) model: use swap_in / "
                "evaluate_all on the sharded model, or save_snapshot and load_snapshot into a "
                "plain model"
            )
        model = unwrap_model(self._store.model)
        live = self._store.live_sources()
        memo: dict[int, Any] = {}
        for key, shadow in self._store.shadow_tensors(k).items():
            source = live[key]
            is_param = isinstance(source, nn.Parameter)
            memo[id(source)] = nn.Parameter(shadow, requires_grad=False) if is_param else shadow
        averaged = copy.deepcopy(model, memo)
        return averaged.eval()

    def averager_info(self, name: str | None = None) -> dict[str, str | int | float]:
        """Metadata of one averager for snapshots: averager, decay, schedule, step.

        Raises:
            UnknownAveragerError: ``name`` is not one of ``averager_names``.
        """
        k = self._index(name)
        return {
            "averager": self._names[k],
            "decay": self._decays[k],
            "schedule": self._describe(k),
            "step": self.step,
        }

    def _describe(self, k: int) -> str:
        raise NotImplementedError

    def compute_stats(self, model: nn.Module) -> WeightStats:
        """Statistics of every shadow against ``model`` now, without updating anything.

        Returns:
            A :class:`~ema_core.stats.WeightStats` at the current ``step`` (plain floats; one
            host transfer). ``last_stats`` is left as it is.

        Raises:
            ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
        """
        self._store.bind(model)
        return self._build_stats(self._store.stats_(None))

    def _is_stats_step(self) -> bool:
        return self._stats_every > 0 and self.step % self._stats_every == 0

    def _apply(self, model: nn.Module, weights: Sequence[float] | None) -> None:
        """Bind, update with per-shadow lerp ``weights`` (None: no update), stats if due."""
        self._store.bind(model)
        if self._is_stats_step():
            self.last_stats = self._build_stats(self._store.stats_(weights))
        elif weights is not None:
            self._store.update_(weights, foreach=self.foreach)

    def _build_stats(self, raw: Any) -> WeightStats:
        return build_weight_stats(
            self.step, self._names, self._decays, raw.keys, raw.live_sq,
            raw.shadow_sq, raw.drift_sq,
        )

    def _swap_lists(self, model: nn.Module, name: str | None) -> tuple[list[Tensor], ...]:
        """(live, shadow, spare) tensor lists for swap_in; the spare is allocated once."""
        k = self._index(name)
        self._store.bind(model)
        live = self._store.live_tensors()
        if self._store.swap_spare is None:
            self._store.swap_spare = [torch.empty_like(t) for t in live]
        return live, list(self._store.shadow_tensors(k).values()), self._store.swap_spare

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically: shadows, counters, schedule state.

        Shadow values are the stored tensors (no copy); ``torch.save`` keeps their shared
        storage once. For a sharded model they are DTensors over the local shards (as in
        :meth:`shadow_state_dict`), so ``torch.distributed.checkpoint`` saves and loads them
        like the model's own state dict: ``dcp.save({"model": ..., "ema": ema}, ...)`` and
        ``dcp.load`` with the same dict (the averager is a DCP ``Stateful``).
        """
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "kind": self.kind,
            "averager_names": list(self._names), "step": self.step,
            "decays": list(self._decays), "extra": self._extra_state(),
            "shadows": {n: self._store.global_shadow(k) for k, n in enumerate(self._names)},
        }

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise what :meth:`load_state_dict` would raise for ``state``, copying nothing.

        Raises:
            StateDictError: wrong format/kind, different averager names, schedules, keys or
                shapes.
        """
        if state.get("format") != STATE_FORMAT or state.get("kind") != self.kind:
            raise StateDictError(
                f"Not a {self.kind} state (format={state.get('format')!r}, "
                f"kind={state.get('kind')!r}): pass the dict returned by {type(self).__name__}"
                ".state_dict()"
            )
        if list(state["averager_names"]) != list(self._names):
            raise StateDictError(
                f"State holds averagers {state['averager_names']}, this object "
                f"{list(self._names)}: construct it with the same decays/schedule"
            )
        self._check_extra_state(state["extra"])
        for k, name in enumerate(self._names):
            _check_shadow(self._store.global_shadow(k), state["shadows"].get(name, {}), name)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (copies into the existing storage).

        On a sharded model each rank copies its own piece: from a DTensor (as
        ``torch.distributed.checkpoint`` loads it) or from a full tensor that every rank
        holds (a state saved without sharding), cut locally without communication.

        Raises:
            StateDictError: wrong format/kind, different averager names, keys or shapes
                (checked before anything is copied).
        """
        self.check_state_dict(state)
        layouts = self._store.layouts
        with torch.no_grad():
            for k, name in enumerate(self._names):
                for key, tensor in self._store.shadow_tensors(k).items():
                    tensor.copy_(local_piece(state["shadows"][name][key], layouts[key]))
        self.step = int(state["step"])
        self._decays = [float(d) for d in state["decays"]]
        self._load_extra_state(state["extra"])

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _check_extra_state(self, extra: dict[str, Any]) -> None:
        """Raise StateDictError if ``extra`` (from :meth:`_extra_state`) does not fit."""

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved (after :meth:`_check_extra_state`)."""


def _check_shadow(dst: dict[str, Tensor], src: dict[str, Tensor], name: str) -> None:
    bad = sorted(set(dst) ^ set(src)) + [
        k for k in dst if k in src and src[k].shape != dst[k].shape
    ]
    if bad:
        raise StateDictError(
            f"Shadow {name!r} in the state differs from this model at keys {bad[:5]}: "
            "resume with the same architecture"
        )
