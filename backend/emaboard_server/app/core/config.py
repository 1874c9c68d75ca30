"""Server settings: one pydantic-settings class read from ``EMABOARD_*`` environment variables.

Every field is documented in ``docs/settings.md`` (a test checks it). The ``emaboard serve``
flags override the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ema_core.wire import DEFAULT_MAX_OBJECT_BYTES


class Settings(BaseSettings):
    """Configuration of one emaboard server process.

    Attributes:
        data_dir: Directory holding the SQLite database (by default) and snapshot files.
        database_url: SQLAlchemy URL; empty means ``sqlite:///<data_dir>/emaboard.db``.
        host: Interface ``emaboard serve`` binds to; loopback by default.
        port: TCP port ``emaboard serve`` listens on.
        allowed_hosts: Host names the server answers to (``Host`` header, DNS-rebinding
            protection); ``*.example.com`` matches subdomains, ``*`` anything. The bound
            ``host`` and any IP address are always allowed. From the environment: a comma-
            separated list or a JSON array.
        token: When set, every ``/api`` route (except health) and websocket needs it; an
            empty string (``EMABOARD_TOKEN=``) means unset.
        max_upload_bytes: Largest accepted snapshot file, in bytes (its multipart body may be
            1 MiB more).
        max_body_bytes: Largest request body of every other route (a metrics batch, a run,
            a PATCH), in bytes.
        max_object_bytes: Largest run ``config``, run ``summary`` (after merging) and
            snapshot ``metadata``, each as compact JSON, in bytes.
        max_points_per_request: Most metric points one ``POST .../metrics`` may carry.
        ws_queue_size: Messages a websocket client may have queued before it is told to resync.
        ws_send_interval_ms: Least time between two messages to one websocket, in ms; what
            arrives meanwhile is merged into the next message.
        workers: Server processes ``emaboard serve`` runs (PostgreSQL only beyond 1).
        live_fanout: Whether websocket updates travel between server processes through
            PostgreSQL LISTEN/NOTIFY; None (the default) means "when ``workers`` > 1". Set
            it for several ``emaboard serve`` instances on one database.
        posthoc_budget_bytes: Disk budget of one run's post-hoc EMA snapshots, in bytes; over
            it the server thins the oldest ones, keeping reconstructions well-posed
            (``docs/api.md``). 0 = no budget.
        posthoc_max_concurrent: Post-hoc syntheses (checkpoint downloads) computed at once;
            more wait their turn.
    """

    model_config = SettingsConfigDict(env_prefix="EMABOARD_", extra="ignore")

    data_dir: Path = Path("./emaboard-data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_hosts: Annotated[list[str], NoDecode] = ["localhost", "127.0.0.1", "::1"]
    token: str | None = None
    max_upload_bytes: int = Field(default=1 << 30, gt=0)
    max_body_bytes: int = Field(default=4 << 20, gt=0)
    max_object_bytes: int = Field(default=DEFAULT_MAX_OBJECT_BYTES, gt=0)
    max_points_per_request: int = Field(default=50_000, gt=0)
    ws_queue_size: int = Field(default=256, gt=0)
    ws_send_interval_ms: int = Field(default=25, ge=0, le=10_000)
    workers: int = Field(default=1, ge=1, le=64)
    live_fanout: bool | None = None
    posthoc_budget_bytes: int = Field(default=10 << 30, ge=0)
    posthoc_max_concurrent: int = Field(default=2, gt=0)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, hosts: Any) -> Any:
        # EMABOARD_ALLOWED_HOSTS=localhost,server (compose files, shells) or a JSON array
        if isinstance(hosts, str):
            text = hosts.strip()
            if text.startswith("["):
                return json.loads(text)
            return [host.strip() for host in text.split(",") if host.strip()]
        return hosts

    @field_validator("token")
    @classmethod
    def _empty_token_is_unset(cls, token: str | None) -> str | None:
        # ``EMABOARD_TOKEN=`` (how env files and compose "unset" a variable) must not turn
        # auth on with a token no client can send: clients send no header for an empty one.
        return token or None

    def resolved_database_url(self) -> str:
        """Return ``database_url``, or the default SQLite file inside ``data_dir`` when empty."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'emaboard.db').resolve()}"

    def fanout_enabled(self) -> bool:
        """Whether live fan-out between processes is on (``live_fanout``, by default
        ``workers`` > 1)."""
        return self.workers > 1 if self.live_fanout is None else self.live_fanout

    @property
    def snapshot_dir(self) -> Path:
        """Directory under ``data_dir`` where snapshot files live (one folder per run id)."""
        return self.data_dir / "snapshots"
