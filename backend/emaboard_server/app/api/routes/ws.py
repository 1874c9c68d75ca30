"""Websockets: ``/ws/runs/{run_id}`` (one run's points, status, snapshots) and ``/ws/runs``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from emaboard_server.app import crud, read_points
from emaboard_server.app.api.close_codes import WS_4401_INVALID_TOKEN, WS_4404_RUN_NOT_FOUND
from emaboard_server.app.api.deps import RunId
from emaboard_server.app.core.security import INVALID_TOKEN, presented_token, token_ok
from emaboard_server.app.exceptions import RunNotFound
from emaboard_server.app.hub import Subscriber
from emaboard_server.app.schemas import NoNul
from emaboard_server.app.serialize import point_dicts, runs_dicts
from emaboard_server.app.state import AppState

router = APIRouter(tags=["websockets"])


async def _accept(websocket: WebSocket) -> AppState | None:
    """Accept the socket; close it with 4401 on a bad or missing token."""
    state: AppState = websocket.app.state.emaboard
    await websocket.accept()
    if not token_ok(state.settings.token,
                    presented_token(websocket.headers, websocket.query_params)):
        await websocket.close(code=WS_4401_INVALID_TOKEN, reason=INVALID_TOKEN)
        return None
    return state


async def _serve(websocket: WebSocket, state: AppState, sub: Subscriber, hello: str) -> None:
    """Send ``hello``, start the subscriber's sender and wait for either side to end."""
    try:
        await websocket.send_text(hello)
        sender = state.hub.start(sub)
        while True:
            receive = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            if receive.result()["type"] == "websocket.disconnect":
                break
    finally:
        await state.hub.unsubscribe(sub)
        with contextlib.suppress(Exception):
            await websocket.close()


@router.websocket("/ws/runs/{run_id}")
async def run_socket(websocket: WebSocket, run_id: RunId) -> None:
    """One run: hello (run + latest values), then points, run changes, snapshots, resync."""
    state = await _accept(websocket)
    if state is None:
        return
    sub = state.hub.subscribe(run_id, websocket.send_text)

    def load() -> dict[str, Any]:
        with state.db.reading() as session:
            run = crud.require_run(session, run_id=run_id)
            latest = read_points.latest_points(session.connection(), run_id=run_id)
            return {"type": "hello", "run": runs_dicts(session, [run])[0],
                    "latest": point_dicts(latest)}

    try:
        hello = await run_in_threadpool(load)
    except RunNotFound as exc:
        await state.hub.unsubscribe(sub)
        await websocket.close(code=WS_4404_RUN_NOT_FOUND, reason=str(exc))
        return
    await _serve(websocket, state, sub, json.dumps(hello, allow_nan=False))


@router.websocket("/ws/runs")
async def runs_socket(
    websocket: WebSocket, project: Annotated[str | None, NoNul] = None
) -> None:
    """The run list: all runs on connect, then creations, changes and deletions."""
    state = await _accept(websocket)
    if state is None:
        return
    sub = state.hub.subscribe("runs", websocket.send_text, project=project)

    def load() -> dict[str, Any]:
        with state.db.reading() as session:
            return {"type": "runs", "runs": runs_dicts(session, crud.list_runs(
                session, project=project))}

    hello = await run_in_threadpool(load)
    await _serve(websocket, state, sub, json.dumps(hello, allow_nan=False))
