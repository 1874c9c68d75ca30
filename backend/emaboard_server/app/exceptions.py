"""Domain errors of the server: raised by queries and writes, mapped to HTTP answers in one
place (:mod:`emaboard_server.app.api.errors`), so no route tests for ``None`` itself.

Class tree (HTTP status of the answer)::

    LookupError
     └── NotFound                 404, the message is the API's fixed phrase
          ├── RunNotFound         "Run not found"
          └── SnapshotNotFound    "Snapshot not found"
    ValueError
     ├── snapshot_files.InvalidSnapshot    400 "File is not a valid safetensors file: ..."
     ├── snapshot_files.SnapshotTooLarge   413 "Upload too large: ..."
     └── schemas.ObjectTooLarge            422 "Invalid field 'config': ... over max_object_bytes"
"""

from __future__ import annotations

RUN_NOT_FOUND = "Run not found"
SNAPSHOT_NOT_FOUND = "Snapshot not found"


class NotFound(LookupError):
    """A run or snapshot that the request names does not exist."""


class RunNotFound(NotFound):
    """No run has this id."""

    def __init__(self) -> None:
        super().__init__(RUN_NOT_FOUND)


class SnapshotNotFound(NotFound):
    """The run has no snapshot with this id (or its file is gone)."""

    def __init__(self) -> None:
        super().__init__(SNAPSHOT_NOT_FOUND)
