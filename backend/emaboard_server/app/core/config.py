"""Server settings: one pydantic-settings class read from ``EMABOARD_*`` environment variables.

Every field is documented in ``docs/settings.md`` (a test checks it). The ``emaboard serve``
flags override the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of one emaboard server process.

    Attributes:
        data_dir: Directory holding the SQLite database (by default) and snapshot files.
        database_url: SQLAlchemy URL; empty means ``sqlite:///<data_dir>/emaboard.db``.
        host: Interface ``emaboard serve`` binds to; loopback by default.
        port: TCP port ``emaboard serve`` listens on.
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
    """

    model_config = SettingsConfigDict(env_prefix="EMABOARD_", extra="ignore")

    data_dir: Path = Path("./emaboard-data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    token: str | None = None
    max_upload_bytes: int = Field(default=1 << 30, gt=0)
    max_body_bytes: int = Field(default=4 << 20, gt=0)
    max_object_bytes: int = Field(default=64 << 10, gt=0)
    max_points_per_request: int = Field(default=50_000, gt=0)
    ws_queue_size: int = Field(default=256, gt=0)

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

    @property
    def snapshot_dir(self) -> Path:
        """Directory under ``data_dir`` where snapshot files live (one folder per run id)."""
        return self.data_dir / "snapshots"
