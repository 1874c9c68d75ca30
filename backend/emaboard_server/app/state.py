"""What one server instance holds: settings, database, websocket hub, runs touched by ingest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database
from emaboard_server.app.fanout import Fanout
from emaboard_server.app.hub import Hub


@dataclass
class AppState:
    """Shared by every request of one app; built by :func:`emaboard_server.app.main.create_app`.

    Attributes:
        touched_runs: Ids of runs that received points since the run-list ticker's last
            tick (:class:`emaboard_server.app.run_list.RunListTicker`).
        posthoc_slots: Bounds the post-hoc syntheses computed at once
            (``posthoc_max_concurrent``).
        fanout: Live updates to and from the other server processes (inert with one).
    """

    settings: Settings
    db: Database
    hub: Hub
    fanout: Fanout
    touched_runs: set[int] = field(default_factory=set)
    posthoc_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
