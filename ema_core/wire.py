"""NaN and ±Infinity on the wire: the one encoder and parser shared by client and server.

JSON has no NaN or infinity. emaboard's API (``docs/api.md``) sends a non-finite float as
one of the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, in both directions, and
every other float as a JSON number. The training client (:mod:`ema_core.transport`,
:mod:`ema_core.snapshot`, the Monitor's run config) and the server (request models,
responses, websocket pushes) all encode and parse through this module; the dashboard's
``frontend/js/values.js`` is its JavaScript twin, and a test feeds both the same values.

Standard library only: the server imports this module and never imports torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_MAX_OBJECT_BYTES",
    "MAX_CREATION_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "NON_FINITE",
    "RESUME_MODES",
    "check_creation_id",
    "check_tags",
    "decode_float",
    "encode_float",
    "encode_json",
    "json_depth",
    "json_size",
    "points_json",
]

RESUME_MODES = ("never", "allow", "must")
"""How ``POST /api/runs`` treats a run (project, name) that already exists (docs/api.md):
``never`` creates a new run under a free name (``name-2``, ``name-3``, …), ``allow`` continues
it (and creates it when missing), ``must`` continues it and answers 404 when it is missing.
The server's ``ResumeMode`` (``schemas.py``) spells the same values; a test compares them."""

NON_FINITE: Mapping[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""The wire strings of the non-finite floats, and the float each one stands for."""

MAX_JSON_DEPTH = 32
"""Deepest nesting the API accepts in a free-form object (run config, summary, snapshot
metadata). Configs of real trainers (Hydra, Lightning, transformers) nest well under 10
levels; the server's response serializer gives up near 255, Python's recursion near 1,000."""

DEFAULT_MAX_OBJECT_BYTES = 64 << 10
"""The server's default ``max_object_bytes``: the largest free-form object as compact JSON."""

MAX_TAG_LENGTH = 64
"""The longest run tag, in characters."""

MAX_TAGS = 32
"""The most tags one run holds."""

MAX_CREATION_ID_LENGTH = 64
"""The longest creation id of a run (``POST /api/runs``), in characters."""

_CREATION_ID = re.compile(r"[A-Za-z0-9_-]+")


def check_creation_id(value: str) -> str:
    """A run's creation id, checked: 1 to :data:`MAX_CREATION_ID_LENGTH` ASCII letters,
    digits, ``-`` or ``_`` (the Monitor sends a ``uuid.uuid4().hex``, 32 hex digits).

    The client generates it once per spool and sends it with ``POST /api/runs``; the server
    answers a request whose creation id a run of the project already has with that run, so
    a retry after a lost reply never creates a second run (docs/api.md).

    Returns:
        ``value``.

    Raises:
        ValueError: naming the value (its start, when it is long) and the rule.
    """
    if len(value) <= MAX_CREATION_ID_LENGTH and _CREATION_ID.fullmatch(value):
        return value
    shown = repr(value) if len(value) <= MAX_CREATION_ID_LENGTH else (
        f"{value[:MAX_CREATION_ID_LENGTH]!r}... ({len(value)} characters)")
    raise ValueError(f"Invalid creation_id {shown}: expected 1 to {MAX_CREATION_ID_LENGTH} "
                     "ASCII letters, digits, '-' or '_', e.g. uuid.uuid4().hex")


def check_tags(tags: Iterable[Any]) -> list[str]:
    """Run tags, checked: each a string of 1 to :data:`MAX_TAG_LENGTH` characters with no
    comma, no control character and no space at either end; at most :data:`MAX_TAGS`.

    Returns:
        The tags without repeats, sorted (the order the server stores and answers).

    Raises:
        ValueError: naming the first bad tag and the rule (a comma separates tags in the
            dashboard's tag field, so a tag holds none).
    """
    out: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError(f"Invalid tag {tag!r}: expected a string")
        if not 1 <= len(tag) <= MAX_TAG_LENGTH or tag != tag.strip():
            raise ValueError(f"Invalid tag {tag!r}: expected 1 to {MAX_TAG_LENGTH} characters "
                             "without spaces at either end")
        if "," in tag or any(ord(c) < 32 or ord(c) == 127 for c in tag):
            raise ValueError(f"Invalid tag {tag!r}: a tag holds no comma or control character")
        out.add(tag)
    if len(out) > MAX_TAGS:
        raise ValueError(f"Too many tags: {len(out)} > {MAX_TAGS}")
    return sorted(out)


# The JSON text of a non-finite value: a string literal, quotes included.
_NON_FINITE_TEXT = {math.inf: '"Infinity"', -math.inf: '"-Infinity"'}


def encode_float(value: float) -> float | str:
    """A float in wire form: itself when finite, else ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

    Args:
        value: Any real number (``int`` passes through unchanged).

    Returns:
        ``value``, or the API string standing for it.
    """
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: Any) -> float:
    """Parse a wire value: a JSON number, or one of the strings of :data:`NON_FINITE`.

    Args:
        value: What a JSON parser produced for one value.

    Returns:
        The value as a float (``nan``, ``inf`` or ``-inf`` for the three strings).

    Raises:
        ValueError: ``value`` is neither a number (bools are not numbers here) nor one of
            the three strings; the message names it.
    """
    if value.__class__ in (float, int):
        return float(value)
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    raise ValueError(
        f"Invalid wire value {value!r}: expected a number or one of 'NaN', 'Infinity', "
        "'-Infinity'"
    )


def encode_json(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth, replaced by its wire string.

    Mappings become dicts and tuples become lists (as JSON holds them); everything else is
    returned unchanged, so ``json.dumps(encode_json(v), allow_nan=False)`` raises only for
    what JSON cannot hold at all.

    Args:
        value: A JSON-like value: dicts, lists, tuples, strings, numbers, bools, None.

    Returns:
        The same structure with ``float('nan')``, ``inf`` and ``-inf`` as the API strings.
    """
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, Mapping):
        return {key: encode_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encode_json(item) for item in value]
    return value


def points_json(points: Iterable[tuple[str, int, float, float]]) -> str:
    """Points ``(key, step, value, wall_time)`` as comma-separated JSON objects, no brackets.

    The same text as ``json.dumps`` of the wire-form dicts ``{"key", "step", "value",
    "wall_time"}`` without its outer brackets, a few times faster: each key is escaped once,
    each finite float written by ``repr``. Non-finite values become the wire strings.

    Args:
        points: Python ``str`` keys, ``int`` steps, ``float`` values and wall times (Unix s).

    Returns:
        ``'{"key":"a","step":1,"value":0.5,"wall_time":1.7e9},...'`` (empty for no points).
    """
    names: dict[str, str] = {}
    parts = []
    for key, step, value, wall_time in points:
        name = names.get(key)
        if name is None:
            name = names[key] = json.dumps(key)
        if value - value == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
            text = repr(value)
        else:
            text = _NON_FINITE_TEXT.get(value, '"NaN"')
        parts.append(f'{{"key":{name},"step":{step},"value":{text},"wall_time":{wall_time!r}}}')
    return ",".join(parts)


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` and ``{}`` are 1), counted without
    recursion; counting stops once it passes ``limit`` (the result is then ``limit + 1``)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        depth += 1
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in item)
    return deepest


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (non-finite floats already wire strings), the
    measure of ``max_object_bytes``."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
