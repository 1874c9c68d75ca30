"""Build the FastAPI app: API routers, websockets, error shape, body cap, static dashboard."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware

from emaboard_server.app.api.auth import SameOriginMiddleware, TokenMiddleware
from emaboard_server.app.api.errors import install_error_handlers
from emaboard_server.app.api.hosts import AllowedHostsMiddleware, HostPolicy
from emaboard_server.app.api.limits import BodyLimitMiddleware
from emaboard_server.app.api.openapi import API_ERRORS, install_openapi
from emaboard_server.app.api.options import OptionsMiddleware
from emaboard_server.app.api.routes import (
    export,
    health,
    metrics,
    posthoc,
    runs,
    snapshots,
    ws,
)
from emaboard_server.app.api.routes.health import package_version
from emaboard_server.app.compression import (
    GZIP_EXCLUDED_TYPES,
    GZIP_LEVEL,
    GZIP_MINIMUM_BYTES,
    PrecompressedFile,
    frontend_dir,
    plotly_js,
)
from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database, WalCheckpointer, upgrade_database
from emaboard_server.app.fanout import Fanout
from emaboard_server.app.hub import Hub
from emaboard_server.app.run_list import RunListTicker
from emaboard_server.app.state import AppState

logger = logging.getLogger(__name__)

def _api_router() -> APIRouter:
    api = APIRouter(prefix="/api", responses=API_ERRORS)
    for module in (health, runs, metrics, snapshots, posthoc, export):
        api.include_router(module.router)
    return api


def create_state(settings: Settings) -> AppState:
    """What one app serves from: ``settings``, its database (not opened yet), a websocket hub,
    the live fan-out between server processes, the post-hoc synthesis slots.

    Raises:
        ValueError: Fan-out between several processes is asked for on SQLite.
    """
    db = Database(settings.resolved_database_url())
    if settings.fanout_enabled() and db.is_sqlite:
        raise ValueError(f"Live fan-out between {settings.workers} server processes needs "
                         "PostgreSQL: set database_url to postgresql://..., or run one "
                         "process (workers=1, live_fanout unset)")
    hub = Hub(settings.ws_queue_size, send_interval_s=settings.ws_send_interval_ms / 1000)
    return AppState(settings=settings, db=db, hub=hub,
                    fanout=Fanout(hub, db, enabled=settings.fanout_enabled()),
                    posthoc_slots=asyncio.Semaphore(settings.posthoc_max_concurrent))


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an emaboard server app.

    The database is upgraded (``alembic upgrade head``) when the app starts (lifespan).

    Args:
        settings: Configuration; ``Settings()`` (environment variables) when None.

    Returns:
        The FastAPI app; its :class:`AppState` is at ``app.state.emaboard`` (the lifespan
        starts what that state holds, so an app can be given another state before it starts).

    Raises:
        ValueError: Fan-out between several processes is asked for on SQLite.
    """
    settings = settings or Settings()

    plotly = PrecompressedFile(plotly_js(), "text/javascript")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: AppState = app.state.emaboard
        state.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await run_in_threadpool(upgrade_database, state.db.engine, state.settings.data_dir)
        await run_in_threadpool(plotly.prepare)  # the first page load need not wait for it
        ticker = RunListTicker(state)
        ticker.start()
        checkpointer = WalCheckpointer(state.db.engine) if state.db.is_sqlite else None
        if checkpointer is not None:
            checkpointer.start()
        await state.fanout.start()
        # What exists now lives as long as the server: out of the garbage collector's sight,
        # a full collection (a pause of tens of ms in the middle of requests) only walks
        # what requests allocated.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.fanout.stop()
            await ticker.stop()
            if checkpointer is not None:
                checkpointer.stop()
            state.db.dispose()

    app = FastAPI(title="emaboard", version=package_version(), lifespan=lifespan,
                  description="Live EMA/SWA weight-averaging dashboard: runs, metrics, snapshots.")
    app.state.emaboard = create_state(settings)
    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES,  # innermost
                       compresslevel=GZIP_LEVEL, exclude_content_types=GZIP_EXCLUDED_TYPES)
    app.add_middleware(OptionsMiddleware)  # OPTIONS answers for the routes
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(TokenMiddleware, token=settings.token)  # before any body is read
    app.add_middleware(SameOriginMiddleware)  # cross-site browser requests
    app.add_middleware(AllowedHostsMiddleware,  # outermost: DNS rebinding
                       policy=HostPolicy(settings.allowed_hosts, settings.host))
    app.include_router(_api_router())
    app.include_router(ws.router)
    install_openapi(app, token_required=settings.token is not None)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def read_plotly(request: Request) -> Response:
        return plotly.response(request)

    static = frontend_dir()
    if static.is_dir():
        app.mount("/", StaticFiles(directory=static, html=True), name="frontend")
    else:
        logger.warning("no dashboard files at %s; serving the API only", static)
    return app
