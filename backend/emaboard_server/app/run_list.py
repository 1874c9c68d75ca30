"""Pushes to the run list (``/ws/runs``): a run's current form, and a ticker that sends the
``last_step``/``last_seen_at`` moves of runs that received points (at most once a second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool

from emaboard_server.app import crud
from emaboard_server.app.serialize import runs_dicts
from emaboard_server.app.state import AppState

logger = logging.getLogger(__name__)

RUN_LIST_INTERVAL_S = 1.0


async def publish_runs(state: AppState, run_ids: Iterable[int]) -> None:
    """Push the current form of each run in ``run_ids`` (deleted ones skipped) to ``/ws/runs``
    subscribers of its project."""

    def load() -> list[dict[str, Any]]:
        with state.db.reading() as session:
            runs = [run for run_id in run_ids if (run := crud.get_run(session, run_id=run_id))]
            return runs_dicts(session, runs)

    for run in await run_in_threadpool(load):
        await state.fanout.publish("runs", {"type": "run", "run": run}, project=run["project"])


class RunListTicker:
    """Every :data:`RUN_LIST_INTERVAL_S`, publishes the runs in ``state.touched_runs`` (what
    ingest marked) when someone listens to ``/ws/runs`` (here, or with live fan-out in
    another process), then clears the set."""

    def __init__(self, state: AppState, interval_s: float = RUN_LIST_INTERVAL_S) -> None:
        self.state = state
        self.interval_s = interval_s
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the ticker task (call inside the event loop)."""
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the ticker task and wait for it."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def tick(self) -> None:
        """Publish the touched runs once (nothing when nobody listens)."""
        state = self.state
        if not state.touched_runs or not (state.hub.has_subscribers("runs")
                                          or state.fanout.enabled):
            state.touched_runs.clear()
            return
        run_ids, state.touched_runs = state.touched_runs, set()
        await publish_runs(state, run_ids)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:  # keep ticking: one failed read must not end run-list updates
                logger.exception("could not publish run-list updates")
