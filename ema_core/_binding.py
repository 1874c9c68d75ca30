"""Binding: which tensor objects a model holds, checked cheaply before every update (private).

An averager reads the live weights through references taken when it was bound to the model.
Those references go stale when the model is given new tensors rather than new values:
``model.load_state_dict(sd, assign=True)``, ``module.weight = nn.Parameter(...)``, a replaced
buffer or submodule, ``module.to(device)`` (``param.data`` moves to new storage). The EMA
would then keep averaging the orphaned tensors and never move again (timm's ``ModelEmaV3``
reads ``model.state_dict()`` on every update and so tracks such changes). :class:`Binding`
records the module tree and the tensors' storage.

Cheap on every update: new tensors and submodules reach a model through
``register_parameter`` / ``register_buffer`` / ``register_module`` (which ``setattr`` and
``load_state_dict(assign=True)`` call), and torch's global registration hooks count those
events in :data:`_REGISTRATIONS`. While the count is unchanged, ``unchanged()`` only compares
the tensors' ``data_ptr`` (for ``.to()`` and ``param.data = ...``, which register nothing);
after any registration anywhere in the process it compares the whole module tree once
(C-level ``map`` calls, about 0.1 µs per entry warm). Writing into ``module._parameters``
directly registers nothing and is noticed at the next registration of any module.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ema_core._distributed import data_ptr, is_dtensor

_REGISTRATIONS = [0]  # parameters, buffers and submodules registered in this process
_hooks_installed = False


def _count(*args: Any) -> None:
    _REGISTRATIONS[0] += 1


def _install_hooks() -> None:
    """Count every registration of a parameter, buffer or submodule (once per process)."""
    global _hooks_installed
    if not _hooks_installed:
        nn.modules.module.register_module_parameter_registration_hook(_count)
        nn.modules.module.register_module_buffer_registration_hook(_count)
        nn.modules.module.register_module_module_registration_hook(_count)
        _hooks_installed = True


class Binding:
    """What ``model`` held when an averager bound to it.

    Recorded: every entry of every module's ``_modules``, ``_parameters`` and persistent
    ``_buffers`` (container, name, object), each container's size, and the ``data_ptr`` of the
    bound tensors. Non-persistent buffers (caches that some models re-assign in ``forward``)
    are not state-dict entries and are ignored.

    Args:
        model: The live model.
        tensors: The tensors the averager reads (their storage is recorded).
    """

    def __init__(self, model: nn.Module, tensors: Sequence[Tensor]) -> None:
        _install_hooks()
        self._registrations = _REGISTRATIONS[0]
        sized: list[dict[str, Any]] = []  # containers whose size is compared too
        entries: list[tuple[dict[str, Any], str, Any]] = []
        for module in model.modules():
            for container in (module._modules, module._parameters):
                sized.append(container)
                entries += [(container, name, obj) for name, obj in container.items()]
            entries += [(module._buffers, name, obj) for name, obj in module._buffers.items()
                        if name not in module._non_persistent_buffers_set]
        self._containers = sized
        self._sizes = [len(d) for d in sized]
        self._dicts = [d for d, _, _ in entries]
        self._names = [name for _, name, _ in entries]
        self._objects = [obj for _, _, obj in entries]
        self._tensors = [t for t in tensors if not is_dtensor(t)]
        self._pointers = [t.data_ptr() for t in self._tensors]
        self._sharded = [t for t in tensors if is_dtensor(t)]  # FSDP2: their local shards'
        self._shard_pointers = [data_ptr(t) for t in self._sharded]

    def unchanged(self) -> bool:
        """Whether the model still holds the same modules and tensors, in the same storage."""
        if _REGISTRATIONS[0] != self._registrations:  # something registered somewhere
            if not self.same_objects():
                return False
            self._registrations = _REGISTRATIONS[0]
        return (
            list(map(Tensor.data_ptr, self._tensors)) == self._pointers
            and list(map(data_ptr, self._sharded)) == self._shard_pointers
        )

    def same_objects(self) -> bool:
        """Whether every recorded module, parameter and buffer is still in its place."""
        return (
            all(map(operator.is_, map(dict.get, self._dicts, self._names), self._objects))
            and list(map(len, self._containers)) == self._sizes
        )
