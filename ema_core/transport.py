"""The HTTP calls the client makes to an emaboard server (see ``docs/api.md``).

Used by the background sender (:mod:`ema_core.sender`) and by ``emaboard sync``
(:func:`ema_core.spool.sync_spool`); nothing here runs on the training thread.

Exceptions::

    TransportError
     ├── RetryableError    server unreachable, timed out, 5xx, 401/403, 408, 429, or a 2xx
     │                     whose body is not JSON (not the emaboard API): try again later
     ├── PayloadTooLarge   413: send fewer points per request
     ├── RunGone           404 on a run route: the run was deleted; create it again
     └── RejectedError     any other 4xx: the request itself is wrong; retrying cannot help
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import httpx

from ema_core.wire import points_json

__all__ = [
    "ApiClient",
    "CreatedRun",
    "Ingested",
    "PayloadTooLarge",
    "Point",
    "RejectedError",
    "RetryableError",
    "RunGone",
    "TransportError",
]

Point = tuple[str, int, float, float]  # (key, step, value, wall_time)

logger = logging.getLogger(__name__)


class CreatedRun(NamedTuple):
    """The server's answer to ``POST /api/runs``: the run's id and the name it got."""

    id: int
    name: str


class Ingested(NamedTuple):
    """The server's answer to a batch of points (``IngestResult`` in docs/api.md)."""

    inserted: int  # new points
    conflicts: int  # points at a stored (key, step) with another value; not stored

_RETRYABLE_STATUS = frozenset({401, 403, 408, 425, 429})
# How a server without creation ids (before migration 0008) refuses the field.
_OLD_SERVER_CREATE = "answered 422: Invalid field 'creation_id': Extra inputs are not permitted"
_JSON = {"Content-Type": "application/json"}


class TransportError(Exception):
    """Base class of the errors raised by :class:`ApiClient`."""


class RetryableError(TransportError):
    """The server could not take the request now (down, slow, overloaded, wrong token)."""


class PayloadTooLarge(TransportError):
    """The server answered 413: the request carried too many points or bytes."""


class RunGone(TransportError):
    """The server answered 404 for the run: it was deleted and must be created again."""


class RejectedError(TransportError):
    """The server rejected the request as invalid (4xx); sending it again cannot succeed."""


class ApiClient:
    """A thin synchronous client for the emaboard REST API.

    Args:
        server: base URL, e.g. ``http://127.0.0.1:8000``.
        token: bearer token, when the server requires one.
        timeout_s: connect/read/write timeout of one request, in seconds.

    Raises:
        ValueError: ``server`` is not an http(s) URL or ``timeout_s`` is not positive.
    """

    def __init__(self, server: str, *, token: str | None = None, timeout_s: float = 5.0) -> None:
        if not server.startswith(("http://", "https://")):
            raise ValueError(
                f"Invalid server {server!r}: expected an http:// or https:// URL"
            )
        if not timeout_s > 0:
            raise ValueError(f"Invalid timeout_s {timeout_s!r}: expected a positive number")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def create_run(
        self, project: str, name: str, config: Mapping[str, Any], resume: str = "allow",
        tags: Sequence[str] = (), creation_id: str | None = None,
    ) -> CreatedRun:
        """Create or resume the run (project, name) as ``resume`` says (docs/api.md); ``tags``
        are added to its tags.

        Args:
            creation_id: the training's id (``ema_core.wire.check_creation_id``): the server
                answers the run that already has it, so a retry after a lost reply never
                creates a second run. A server that predates it (422 naming the field) is
                asked again without it.

        Returns:
            The run's server id and its name (another one than ``name`` when ``resume`` is
            ``"never"`` and ``name`` was taken).

        Raises:
            RejectedError: ``resume="must"`` and no such run (404), or an invalid request.
        """
        body = {"project": project, "name": name, "config": dict(config), "resume": resume}
        if tags:
            body["tags"] = list(tags)
        if creation_id is not None:
            try:
                answer = self._request("POST", "/api/runs", json={**body,
                                                                  "creation_id": creation_id})
                return CreatedRun(int(answer["id"]), str(answer.get("name", name)))
            except RejectedError as exc:
                if _OLD_SERVER_CREATE not in str(exc):
                    raise
                logger.warning("emaboard: server %s predates creation ids (upgrade it): a create "
                               "whose reply is lost may leave an empty run", self.server)
        answer = self._request("POST", "/api/runs", json=body)
        return CreatedRun(int(answer["id"]), str(answer.get("name", name)))

    def post_points(self, run_id: int, points: Iterable[Point]) -> Ingested:
        """Post points (key, step, value, wall_time); returns how many were new, and how many
        were conflicts (another value at a stored (key, step); the server kept its own)."""
        body = '{"points":[' + points_json(points) + "]}"
        answer = self._request("POST", f"/api/runs/{run_id}/metrics", content=body.encode(),
                               headers=_JSON)
        return Ingested(int(answer.get("inserted", 0)), int(answer.get("conflicts", 0)))

    def upload_snapshot(
        self,
        run_id: int,
        path: Path,
        *,
        averager: str,
        step: int,
        metric: str | None,
        value: float | None,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        """Upload a safetensors snapshot file (multipart); returns the server's Snapshot.

        The server is asked first whether it holds (averager, step) already: a retry after a
        lost answer then sends no file again. The server itself also answers a repeated
        upload with the stored snapshot (200), so a retry racing the first upload stores
        nothing twice either.

        Raises:
            RejectedError: the server holds another file for (averager, step) (409), or
                refused the upload as invalid.
            RetryableError, PayloadTooLarge, RunGone: as for every request.
            OSError: the file cannot be read.
        """
        stored = self.find_snapshot(run_id, averager=averager, step=step)
        if stored is not None:
            if stored.get("sha256") == _file_sha256(path):
                return stored
            raise RejectedError(
                f"Snapshot conflict: run {run_id} already has snapshot {stored.get('id')} for "
                f"averager {averager!r} at step {step} with another file; not uploading {path}"
            )
        data: dict[str, str] = {
            "averager": averager, "step": str(step), "metadata": json.dumps(dict(metadata)),
        }
        if metric is not None:
            data["metric"] = metric
        if value is not None and math.isfinite(value):
            data["value"] = repr(float(value))
        with open(path, "rb") as file:
            files = {"file": (path.name, file, "application/octet-stream")}
            return self._request("POST", f"/api/runs/{run_id}/snapshots", data=data, files=files)

    def find_snapshot(self, run_id: int, *, averager: str, step: int) -> dict[str, Any] | None:
        """The server's snapshot of ``averager`` at ``step`` in the run, or None."""
        answer = self._request("GET", f"/api/runs/{run_id}/snapshots",
                               params={"averager": averager, "step": step})
        items = answer.get("items", [])
        return dict(items[0]) if items else None

    def update_summary(self, run_id: int, summary: Mapping[str, Any]) -> None:
        """PATCH the run's summary (merged into the stored one, top-level keys)."""
        self._request("PATCH", f"/api/runs/{run_id}", json={"summary": dict(summary)})

    def set_status(self, run_id: int, status: str, *, timeout_s: float | None = None) -> None:
        """PATCH the run's status (``running``, ``finished`` or ``crashed``).

        Args:
            run_id: the server's run id.
            status: the new status.
            timeout_s: this request's timeout in seconds (default: the client's).
        """
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        self._request("PATCH", f"/api/runs/{run_id}", json={"status": status}, **extra)

    def get_json(self, url: str) -> dict[str, Any]:
        """GET a JSON object from the API (``url`` relative to the server)."""
        return self._request("GET", url)

    def download(self, url: str, path: Path) -> Path:
        """Stream a file (e.g. a snapshot's ``download_url``) to ``path`` atomically.

        Raises:
            RetryableError, RejectedError, RunGone: as the other requests.
        """
        tmp = path.with_name(f".{path.name}.part")
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code >= 300:
                    response.read()
                    self._raise_for(response, "GET", url)
                with open(tmp, "wb") as file:
                    for chunk in response.iter_bytes(1 << 20):
                        file.write(chunk)
        except httpx.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise RetryableError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        tmp.replace(path)
        return path

    def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:  # connect/read/write errors and timeouts
            raise RetryableError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code < 300:
            try:
                answer = response.json() if response.content else {}
            except ValueError:  # e.g. a proxy's HTML page: not the emaboard API
                raise RetryableError(
                    f"{method} {url} answered {response.status_code} with a body that is not "
                    f"JSON ({response.text[:80]!r}): check that the server URL points at emaboard"
                ) from None
            return answer if isinstance(answer, dict) else {"items": answer}
        self._raise_for(response, method, url)

    @staticmethod
    def _raise_for(response: httpx.Response, method: str, url: str) -> NoReturn:
        """The error a non-2xx answer maps to."""
        message = f"{method} {url} answered {response.status_code}: {_error_message(response)}"
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
            raise RetryableError(message)
        if response.status_code == 413:
            raise PayloadTooLarge(message)
        if response.status_code == 404 and url.startswith("/api/runs/"):
            raise RunGone(message)
        raise RejectedError(message)


def _file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _error_message(response: httpx.Response) -> str:
    """The ``error.message`` of the API's error shape, or the raw body's start."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
