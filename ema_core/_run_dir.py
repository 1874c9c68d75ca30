"""A run's local directory: its name, its spool, and the identity recorded there — project,
name, the config as JSON (checked against the server's limits) and how to resume (private).

The default directory is ``$EMABOARD_DIR/runs/<project>/<run>`` (``client.default_run_dir``),
each name encoded by :func:`dir_name`: one path component, never ``.`` or ``..``, and two
names never share a directory. A training that starts a new run (``resume="never"``, the
default) takes the first of ``<run>``, ``<run>+2``, ``<run>+3``, … that does not exist yet,
created atomically (:func:`new_run_dir`), so a second training never replays or appends to
the first one's spool.
"""

from __future__ import annotations

import hashlib
import json
import string
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

_KEPT = frozenset(string.ascii_letters + string.digits + "_-.")
_MAX_LENGTH = 120  # characters of an encoded name; longer ones are cut and hashed


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


def dir_name(name: str) -> str:
    """An injective, file-system-safe encoding of a project or run name (one path component).

    Letters, digits, ``_``, ``-`` and ``.`` stay; every other character becomes ``%XX`` per
    UTF-8 byte, ``%`` itself included (``"实验"`` → ``"%E5%AE%9E%E9%AA%8C"``), so different
    names get different directories; a leading ``.`` becomes ``%2E`` (no ``.``, ``..`` or
    hidden directory). An encoding longer than 120 characters is cut to 100 and followed by
    ``~`` and 16 hex digits of the name's SHA-256 (``~`` never occurs otherwise).
    """
    encoded = "".join(
        c if c in _KEPT else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in name
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > _MAX_LENGTH:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = f"{encoded[:100]}~{digest}"
    return encoded


def new_run_dir(base: Path) -> Path:
    """The first of ``base``, ``base+2``, ``base+3``, … that does not exist yet, created
    (``mkdir`` without ``exist_ok``: two processes never get the same one)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        candidate = base if number == 1 else base.with_name(f"{base.name}+{number}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1


def open_spool(run_dir: Path, project: str, run: str, config_json: str, resume: str,
               tags: list[str] | None = None) -> Spool:
    """Open the run's spool and record its identity (``tags`` as a JSON list).

    With ``resume="never"`` the directory must not hold an earlier training's spool; with
    ``"allow"``/``"must"`` an earlier spool is continued (its leftovers are sent first, to the
    server run it was streaming to).

    Raises:
        ValueError: the spool belongs to another (project, run), or, with
            ``resume="never"``, to an earlier training of this one.
    """
    spool = Spool(run_dir / SPOOL_FILENAME)
    meta = spool.meta()
    if meta.get("project", project) != project or meta.get("name", run) != run:
        spool.close()
        raise ValueError(
            f"Run directory {str(run_dir)!r} belongs to run {meta['project']}/{meta['name']}: "
            "pass another run_dir"
        )
    if resume == "never" and "project" in meta:
        spool.close()
        raise ValueError(
            f"Run directory {str(run_dir)!r} holds an earlier training of {project}/{run}: "
            "pass resume='allow' to continue it, or another run_dir (or none: each new "
            "training then gets its own)"
        )
    fields = {"project": project, "name": run, "config": config_json,
              "tags": json.dumps(tags or []), "status": "running", "status_sent": "1"}
    if "server_name" not in meta:  # not created on the server yet: this Monitor decides how
        fields["resume"] = resume
    spool.set_meta(**fields)
    return spool
