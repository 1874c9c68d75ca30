"""What one server instance holds: settings, database, hub, and the run-list ticker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database
from emaboard_server.app.hub import Hub

logger = logging.getLogger(__name__)

RUN_LIST_INTERVAL_S = 1.0


@dataclass
class AppState:
    """Shared by every request of one app; built by :func:`emaboard_server.app.main.create_app`."""

    settings: Settings
    db: Database
    hub: Hub
    touched_runs: set[int] = field(default_factory=set)
    ticker: asyncio.Task[None] | None = None

    def start_ticker(self) -> None:
        """Start the task that pushes ``last_step``/``last_seen_at`` moves to ``/ws/runs``."""
        self.ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop_ticker(self) -> None:
        """Stop the ticker task."""
        if self.ticker is not None:
            self.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ticker

    async def _tick(self) -> None:
        from emaboard_server.app.serialize import publish_runs  # local: avoids an import cycle

        while True:
            await asyncio.sleep(RUN_LIST_INTERVAL_S)
            if not self.touched_runs or not self.hub.subscribers("runs"):
                self.touched_runs.clear()
                continue
            run_ids, self.touched_runs = self.touched_runs, set()
            try:
                await publish_runs(self, run_ids)
            except Exception:  # keep ticking: one failed read must not end run-list updates
                logger.exception("could not publish run-list updates")
