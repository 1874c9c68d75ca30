"""SWA: the uniform running mean of the weights (Izmailov et al. 2018), as an averager."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn as torch_update_bn

from ema_core._averager import Averager
from ema_core.exceptions import InvalidDecayError, StateDictError
from ema_core.swap import swap_in

__all__ = ["SWA"]


class SWA(Averager):
    """Stochastic Weight Averaging: ``shadow = mean(live weights at the averaged steps)``.

    Implemented as the running mean shadow ← shadow + (live − shadow)/(n + 1), a lerp with
    weight 1/(n + 1), on the same flat storage and fused statistics as :class:`EMA`. Averaged
    steps are ``start_step + update_every``, ``start_step + 2·update_every``, … (``step``
    counts ``update()`` calls; call ``update()`` once per epoch for epoch-wise SWA). Before the
    first averaged step the shadow is a copy of the model at construction. Source: Izmailov
    et al. 2018, "Averaging Weights Leads to Wider Optima and Better Generalization";
    ``torch.optim.swa_utils.AveragedModel``. Use ``torch.optim.swa_utils.SWALR`` for the
    learning rate and :meth:`update_bn` for BatchNorm statistics.

    Args:
        model: The live model (DDP/``torch.compile`` prefixes are stripped).
        start_step: Steps before averaging starts (≥ 0).
        update_every: Average every k-th step after ``start_step`` (k ≥ 1).
        average_buffers: Average float buffers too; if False copy them (then call
            :meth:`update_bn` before using the shadow).
        shadow_dtype: Shadow dtype; default fp32 for fp16/bf16 models, else the model's.
        device: Shadow device; default the model's.
        foreach: Use foreach kernels; False runs the per-tensor reference loop.
        stats_every: Statistics into ``last_stats`` every this many steps (0 = never),
            from the first averaged step on (before it the shadow is not yet an average).

    Raises:
        InvalidDecayError: ``update_every`` < 1.
        ValueError: ``start_step`` < 0 or a negative ``stats_every``.
        NoFloatParametersError: the model has no floating-point parameters.
        ModelMismatchError: two state-dict keys are equal once ``module.``/``_orig_mod.`` are
            stripped.
    """

    kind = "swa"

    def __init__(
        self, model: nn.Module, *, start_step: int = 0, update_every: int = 1,
        average_buffers: bool = True, shadow_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None, foreach: bool = True, stats_every: int = 0,
    ) -> None:
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise InvalidDecayError(f"Invalid update_every {update_every!r}: expected an int >= 1")
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"Invalid start_step {start_step!r}: expected an int >= 0")
        self.start_step = start_step
        self.update_every = update_every
        self.n_averaged = 0
        # torch.optim.swa_utils.update_bn recomputes exactly these modules' statistics.
        self.has_batchnorm = any(isinstance(module, _BatchNorm) and module.track_running_stats
                                 for module in model.modules())
        self._bn_recomputed = False
        super().__init__(
            model, ["swa"], average_buffers=average_buffers, shadow_dtype=shadow_dtype,
            device=device, foreach=foreach, stats_every=stats_every,
        )

    @property
    def has_averaged(self) -> bool:
        """Whether at least one step has been averaged (``n_averaged`` > 0)."""
        return self.n_averaged > 0

    def update(self, model: nn.Module) -> None:
        """Advance ``step``; on averaged steps fold ``model``'s weights into the mean.

        Raises:
            ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
        """
        self.step += 1
        t = self.step - self.start_step
        if t <= 0 or t % self.update_every:
            self._apply(model, None)
            return
        weight = 1.0 / (self.n_averaged + 1)
        self._decays = [1.0 - weight]
        self.n_averaged += 1
        self._bn_recomputed = False  # new weights: the statistics belong to the old ones
        self._apply(model, [weight])

    def update_bn(
        self, loader: Iterable[Any], model: nn.Module, device: torch.device | str | None = None
    ) -> None:
        """Recompute BatchNorm running statistics for the SWA weights and store them.

        Swaps the SWA weights into ``model``, runs ``torch.optim.swa_utils.update_bn(loader,
        model, device)`` (one pass over ``loader``, momentum reset to a cumulative average),
        copies the resulting buffers into the shadow and restores the live weights bit-exactly.

        Args:
            loader: Batches as ``update_bn`` accepts (a tensor, or a list/tuple whose first
                element is the input).
            model: The live model.
            device: Where to move each batch; default as given.

        Raises:
            ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
            RuntimeError: called inside a :func:`~ema_core.swap.swap_in` of this SWA.
        """
        with swap_in(model, self):
            torch_update_bn(loader, model, None if device is None else torch.device(device))
            self._store.capture_buffers_(0)
        self._bn_recomputed = True

    @property
    def batchnorm_recomputed(self) -> bool | None:
        """Whether the shadow's BatchNorm statistics were recomputed (:meth:`update_bn`) after
        its last averaged step; None when the model has no BatchNorm with running statistics.

        An SWA shadow's averaged weights never produced the running mean and variance it
        carries (those are averages of the live model's statistics, or copies of them): it
        must be evaluated after :meth:`update_bn` (Izmailov et al. 2018, section 3.2;
        ``torch.optim.swa_utils.update_bn``). :meth:`ema_core.client.Monitor.log_eval`
        streams this flag as ``bn_recomputed/<name>``.
        """
        return self._bn_recomputed if self.has_batchnorm else None

    def _is_stats_step(self) -> bool:
        # Before the first averaged step the shadow is a stale copy of the initial weights:
        # its drift would describe the initialisation, not SWA, so no statistics until then.
        return self.n_averaged > 0 and super()._is_stats_step()

    def averager_info(self, name: str | None = None) -> dict[str, str | int | float]:
        """As :meth:`EMA.averager_info`, plus ``n_averaged``."""
        info = super().averager_info(name)
        info["n_averaged"] = self.n_averaged
        return info

    def _describe(self, k: int) -> str:
        return f"swa(start_step={self.start_step}, update_every={self.update_every})"

    def _extra_state(self) -> dict[str, Any]:
        return {"n_averaged": self.n_averaged, "start_step": self.start_step,
                "update_every": self.update_every, "bn_recomputed": self._bn_recomputed}

    def _check_extra_state(self, extra: dict[str, Any]) -> None:
        saved = (extra["start_step"], extra["update_every"])
        if saved != (self.start_step, self.update_every):
            raise StateDictError(
                f"State was saved with start_step, update_every = {saved}, this SWA has "
                f"{(self.start_step, self.update_every)}: construct the SWA with the same options"
            )

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.n_averaged = int(extra["n_averaged"])
        self._bn_recomputed = bool(extra.get("bn_recomputed", False))  # absent before 0.1.1
