"""Averager state as files a checkpoint folder can hold: safetensors + JSON, never pickle.

``save_averager_state(averagers, folder)`` writes what ``Averager.state_dict()`` holds —
every shadow tensor into ``emaboard_averagers.safetensors``, the counters, decays and
schedule descriptions into ``emaboard_state.json`` — and ``load_averager_state`` reads them
back into averagers built the same way, bit-exactly. The Hugging Face callback keeps them in
each ``checkpoint-N/`` folder; any training loop can do the same next to its own checkpoint.
Nothing here unpickles: a checkpoint folder that crossed the network loads safely.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ema_core._atomic_write import write_atomically
from ema_core._averager import Averager
from ema_core.exceptions import StateDictError

__all__ = ["STATE_FILE", "TENSORS_FILE", "load_averager_state", "save_averager_state"]

TENSORS_FILE = "emaboard_averagers.safetensors"
STATE_FILE = "emaboard_state.json"
_FORMAT = "emaboard.averager_state"
_VERSION = 1


def save_averager_state(
    averagers: Sequence[Averager], folder: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the averagers' state into ``folder`` (two files, each replaced atomically).

    Tensors are keyed ``"<index>/<averager name>/<state-dict key>"`` and copied to CPU (the
    copy is the only extra memory, one shadow set at a time); everything else is JSON.

    Args:
        averagers: EMA/SWA objects, in the order :func:`load_averager_state` gets them.
        folder: An existing folder, e.g. a trainer's ``checkpoint-N``.
        extra: JSON-serializable entries stored alongside (e.g. the run's identity).

    Raises:
        RuntimeError: an averager of a sharded (FSDP2) model: save it with
            ``torch.distributed.checkpoint`` instead (its ``state_dict`` holds DTensors).
        TypeError: ``extra`` is not JSON-serializable.
    """
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    states = []
    for index, averager in enumerate(averagers):
        if averager.sharded:
            raise RuntimeError(
                f"{type(averager).__name__} of a sharded (FSDP2) model: save it with "
                "torch.distributed.checkpoint (dcp.save({'ema': ema}, ...)), not as one file"
            )
        state = averager.state_dict()
        for name, shadow in state.pop("shadows").items():
            for key, tensor in shadow.items():
                tensors[f"{index}/{name}/{key}"] = tensor.detach().to("cpu", copy=True)
        states.append(state)
    text = json.dumps({"format": _FORMAT, "version": _VERSION, "averagers": states,
                       "extra": dict(extra or {})}, indent=1)
    write_atomically(folder / TENSORS_FILE, lambda tmp: save_file(tensors, tmp))
    write_atomically(folder / STATE_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_averager_state(
    averagers: Sequence[Averager], folder: str | os.PathLike[str]
) -> dict[str, Any]:
    """Load the state written by :func:`save_averager_state` into ``averagers``.

    Every check (format, number and kind of averagers, names, schedules, keys, shapes) runs
    before anything is copied.

    Returns:
        The ``extra`` entries stored with the state.

    Raises:
        FileNotFoundError: ``folder`` lacks one of the two files.
        StateDictError: the files hold another format or other averagers, or are damaged.
    """
    folder = Path(folder)
    try:
        saved = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StateDictError(f"{folder / STATE_FILE} is not JSON: {exc}") from None
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        raise StateDictError(f"{folder / STATE_FILE} is not an emaboard averager state")
    states = saved["averagers"]
    if len(states) != len(averagers):
        raise StateDictError(
            f"{folder} holds {len(states)} averager states, {len(averagers)} were given: "
            "build the same averagers (decays, SWA) as the saved training"
        )
    shadows = _read_shadows(folder / TENSORS_FILE, len(states))
    for averager, state, shadow in zip(averagers, states, shadows, strict=True):
        averager.check_state_dict({**state, "shadows": shadow})
    for averager, state, shadow in zip(averagers, states, shadows, strict=True):
        averager.load_state_dict({**state, "shadows": shadow})
    return dict(saved.get("extra", {}))


def _read_shadows(path: Path, count: int) -> list[dict[str, dict[str, torch.Tensor]]]:
    shadows: list[dict[str, dict[str, torch.Tensor]]] = [{} for _ in range(count)]
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for full_key in handle.keys():
                index, name, key = full_key.split("/", 2)
                shadows[int(index)].setdefault(name, {})[key] = handle.get_tensor(full_key)
    except (SafetensorError, ValueError, IndexError) as exc:
        raise StateDictError(f"{path} is not an emaboard averager tensor file: {exc}") from None
    return shadows


