"""A run's local directory: its spool, and the identity recorded there — project, name and the
config as JSON, checked against the server's limits (private)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ema_core.spool import SPOOL_FILENAME, Spool
from ema_core.wire import (
    DEFAULT_MAX_OBJECT_BYTES,
    MAX_JSON_DEPTH,
    encode_json,
    json_depth,
    json_size,
)


def config_json(config: Mapping[str, Any] | None) -> str:
    """``config`` as JSON text, NaN/±Inf as the API's strings (``"NaN"``, ``"Infinity"``, …).

    Raises:
        TypeError: a value JSON cannot hold (e.g. an arbitrary object).
        ValueError: the config is larger than the server takes by default
            (:data:`~ema_core.wire.DEFAULT_MAX_OBJECT_BYTES` as compact JSON) or nests deeper
            than :data:`~ema_core.wire.MAX_JSON_DEPTH` levels: the server would refuse the
            run, so it is refused here, before training starts.
    """
    try:
        encoded = encode_json(dict(config or {}))
        text = json.dumps(encoded, allow_nan=False)
    except RecursionError:
        raise ValueError(_too_deep()) from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Invalid config: {exc}; expected JSON-serializable values") from None
    parsed = json.loads(text)  # tuples are lists now, as the server sees them
    size = json_size(parsed)
    if size > DEFAULT_MAX_OBJECT_BYTES:
        raise ValueError(
            f"Invalid config: {size} bytes of JSON, over the server's limit of "
            f"{DEFAULT_MAX_OBJECT_BYTES} (max_object_bytes): keep it to hyperparameters"
        )
    if json_depth(parsed) > MAX_JSON_DEPTH:
        raise ValueError(_too_deep())
    return text


def _too_deep() -> str:
    return (f"Invalid config: nested deeper than {MAX_JSON_DEPTH} levels, the server's limit; "
            "flatten it")


def open_spool(run_dir: Path, project: str, run: str, config_json: str) -> Spool:
    """Open the run's spool and record its identity.

    Raises:
        ValueError: the directory's spool holds another run (the message names it).
    """
    spool = Spool(run_dir / SPOOL_FILENAME)
    meta = spool.meta()
    if meta.get("project", project) != project or meta.get("name", run) != run:
        spool.close()
        raise ValueError(
            f"Run directory {str(run_dir)!r} belongs to run {meta['project']}/{meta['name']}: "
            "pass another run_dir"
        )
    spool.set_meta(project=project, name=run, config=config_json, status="running",
                   status_sent="1")
    return spool
