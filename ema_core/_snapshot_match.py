"""Matching a snapshot file to a model before loading it (private).

Owns the read side's checks for :func:`ema_core.snapshot.load_snapshot` and
:func:`~ema_core.snapshot.read_snapshot_metadata`: a file is opened with ``safetensors``
only (anything else, a pickle included, is a :class:`SnapshotFormatError`), the model's
tensors are keyed by their prefix-stripped names, and keys and shapes are compared with
messages that list the first offenders and say what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ema_core._keys import strip_state_dict_keys
from ema_core.exceptions import ModelMismatchError, SnapshotFormatError

logger = logging.getLogger(__name__)

MAX_LISTED_KEYS = 5


@contextmanager
def open_snapshot(path: Path) -> Iterator[Any]:
    """A ``safe_open`` handle on ``path`` (tensors on CPU, as torch tensors).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SnapshotFormatError: the file is not a valid safetensors file (also when reading a
            tensor from the handle fails so).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Snapshot file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            yield handle
    except SafetensorError as error:
        raise SnapshotFormatError(
            f"File {str(path)!r} is not a valid safetensors file ({error}): snapshots are "
            "safetensors files written by ema_core.snapshot.save_snapshot or downloaded from "
            "emaboard; torch.save/pickle checkpoints are not accepted"
        ) from error


def read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of the file (on CPU) and its metadata.

    Raises:
        FileNotFoundError, SnapshotFormatError: as :func:`open_snapshot`.
    """
    with open_snapshot(path) as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        return tensors, dict(handle.metadata() or {})


def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state_dict keyed by prefix-stripped names (tensors share the model's memory).

    Raises:
        ModelMismatchError: two keys are the same once wrapper prefixes are stripped.
    """
    return strip_state_dict_keys(model.state_dict(), "load into the unwrapped model instead")


def listed(keys: list[str]) -> str:
    """The first :data:`MAX_LISTED_KEYS` keys as a list, with how many more there are."""
    shown = ", ".join(repr(key) for key in keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def check_keys(path: Path, missing: list[str], unexpected: list[str], *, strict: bool) -> None:
    """With ``strict``, raise when the keys differ; without, log the difference.

    Raises:
        ModelMismatchError: ``strict`` and keys ``missing`` from the file or ``unexpected``
            in it.
    """
    if not missing and not unexpected:
        return
    if not strict:
        logger.warning(
            "Loading %s with strict=False: %d model keys missing from the file %s, "
            "%d file keys not in the model %s",
            path, len(missing), listed(missing), len(unexpected), listed(unexpected),
        )
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (in the model, not in the file): {listed(missing)}")
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected (in the file, not in the model): {listed(unexpected)}"
        )
    raise ModelMismatchError(
        f"Snapshot {str(path)!r} does not match the model's keys: {'; '.join(parts)}. Load it "
        "into the architecture it was saved from, or pass strict=False to load the common keys"
    )


def check_shapes(path: Path, pairs: list[tuple[str, Tensor, Tensor]]) -> None:
    """Raise when any ``(key, file tensor, model tensor)`` pair differs in shape.

    Raises:
        ModelMismatchError: the message names the first offending keys and both shapes.
    """
    wrong = [(key, src, dst) for key, src, dst in pairs if src.shape != dst.shape]
    if not wrong:
        return
    details = "; ".join(
        f"{key!r}: file {tuple(src.shape)} vs model {tuple(dst.shape)}"
        for key, src, dst in wrong[:MAX_LISTED_KEYS]
    )
    more = len(wrong) - MAX_LISTED_KEYS
    raise ModelMismatchError(
        f"Snapshot {str(path)!r} has {len(wrong)} tensor(s) whose shape differs from the "
        f"model's: {details}{f'; ... and {more} more' if more > 0 else ''}. Load it into the "
        "architecture it was saved from"
    )
