"""Downloads of a run's data: series at full resolution as CSV or JSON, the whole run as a zip.

Everything is streamed: a series is read whole (one key at a time, in its own read session,
so no database connection crosses the worker threads that iterate a streaming response),
turned into text and handed on; the zip is written into a small buffer that is drained after
each entry's chunk (``zipfile`` writes data descriptors on a stream it cannot seek), so a
run of any size costs the memory of its largest series.

CSV: one row per point, ``key,step,value,wall_time``, by key then step; a value is a decimal
(``repr`` of the float: exact) or ``NaN``, ``Infinity``, ``-Infinity`` (the API's strings,
which Python's ``float`` and pandas read back). JSON: ``{"series": {key: {"steps",
"values", "wall_times"}}}``, the shape of ``GET /api/runs/{id}/metrics``.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ema_core.wire import encode_float
from emaboard_server.app import crud, read_points
from emaboard_server.app.models import Run
from emaboard_server.app.serialize import runs_dicts, snapshot_dict
from emaboard_server.app.state import AppState

CSV_HEADER = "key,step,value,wall_time\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ROWS_PER_CHUNK = 20_000


def file_stem_of(project: str, name: str, what: str | None = None) -> str:
    """``<project>-<run>[-<what>]`` with characters other than letters, digits, ``.``, ``_``
    and ``-`` replaced by ``_`` (a download name)."""
    parts = [project, name] + ([what] if what else [])
    return "-".join(_UNSAFE.sub("_", part) for part in parts)


def file_stem(run: Run, what: str | None = None) -> str:
    """:func:`file_stem_of` a run."""
    return file_stem_of(run.project, run.name, what)


def _csv_field(text: str) -> str:
    """A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _value_text(value: float) -> str:
    encoded = encode_float(value)
    return encoded if isinstance(encoded, str) else repr(encoded)


def _read(state: AppState, run_id: int, key: str) -> read_points.Series:
    with state.db.reading() as session:
        return read_points.read_series(session.connection(), run_id=run_id, key=key,
                                  min_step=None, max_step=None)


def run_keys(state: AppState, run_id: int, keys: Sequence[str] | None) -> list[str]:
    """``keys`` without repeats, or every key of the run (sorted) when None or empty."""
    if keys:
        return list(dict.fromkeys(keys))
    with state.db.reading() as session:
        return read_points.keys_with_prefix(session.connection(), run_id=run_id, prefix="")


def points_csv(state: AppState, run_id: int, keys: Sequence[str]) -> Iterator[str]:
    """The points of ``keys`` as CSV text, in chunks (header first)."""
    yield CSV_HEADER
    for key in keys:
        series = _read(state, run_id, key)
        field = _csv_field(key)
        values = series.values.tolist()
        for start in range(0, len(series.steps), _ROWS_PER_CHUNK):
            stop = start + _ROWS_PER_CHUNK
            yield "".join(
                f"{field},{step},{_value_text(value)},{wall!r}\n"
                for step, value, wall in zip(series.steps[start:stop], values[start:stop],
                                             series.wall_times[start:stop], strict=True))


def points_json(state: AppState, run_id: int, keys: Sequence[str]) -> Iterator[str]:
    """The series of ``keys`` as one JSON object, in chunks (one per key)."""
    yield '{"series":{'
    for i, key in enumerate(keys):
        series = _read(state, run_id, key)
        body = {"steps": list(series.steps),
                "values": [encode_float(v) for v in series.values.tolist()],
                "wall_times": list(series.wall_times)}
        yield ("," if i else "") + json.dumps(key) + ":" + json.dumps(body, allow_nan=False)
    yield "}}"


class _Drain:
    """A write-only stream (no ``tell``/``seek``: zipfile then writes data descriptors) whose
    bytes are taken out by :meth:`take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the bytes wait in :attr:`parts`."""

    def close(self) -> None:
        """Nothing to close."""

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def run_documents(state: AppState, run_id: int) -> dict[str, Any]:
    """The run (API form), its config and its snapshot list (API form).

    Raises:
        RunNotFound: No run has this id.
    """
    with state.db.reading() as session:
        run = crud.require_run(session, run_id=run_id)
        snapshots = [snapshot_dict(s) for s in crud.list_snapshots(session, run_id=run_id)]
        run_out = runs_dicts(session, [run])[0]
    return {"run": run_out, "config": run_out["config"], "snapshots": snapshots}


def run_zip(state: AppState, run_id: int, documents: dict[str, Any]) -> Iterable[bytes]:
    """The zip of a run: ``points.csv`` (every key), ``config.json``, ``run.json`` (the run as
    ``GET /api/runs/{id}`` answers) and ``snapshots.json`` (as ``GET …/snapshots``)."""
    sink = _Drain()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in ("config", "run", "snapshots"):
            archive.writestr(f"{name}.json", json.dumps(documents[name], indent=2,
                                                        allow_nan=False) + "\n")
        yield sink.take()
        with archive.open("points.csv", "w", force_zip64=True) as entry:
            for chunk in points_csv(state, run_id, run_keys(state, run_id, None)):
                entry.write(chunk.encode())
                yield sink.take()
    yield sink.take()
