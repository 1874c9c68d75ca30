"""SQLAlchemy 2.0 ORM models: runs, metric points, latest value per key, snapshots.

SQLite stores a float NaN as NULL, so metric values go through :class:`NanFloat`, which
writes NaN as SQL NULL and reads NULL back as NaN (the value columns are nullable only for
that reason). ±Inf are stored as they are.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

RUN_STATUSES = ("running", "finished", "crashed")


class NanFloat(TypeDecorator[float]):
    """A double column that round-trips NaN on every backend (NaN ⇄ SQL NULL)."""

    impl = Float(precision=53)
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        """NaN becomes NULL; everything else passes through."""
        if value is None or math.isnan(value):
            return None
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> float:
        """NULL becomes NaN."""
        return math.nan if value is None else float(value)


class Base(DeclarativeBase):
    """Declarative base holding the metadata the Alembic migrations mirror."""


class Run(Base):
    """One training process's stream, identified by (project, name).

    ``creation_id`` is the id the client generated for the training that created the run
    (``POST /api/runs``, migration 0008): unique per project, NULL for runs created without
    one, so a retried create after a lost reply finds the run it already created.
    """

    __tablename__ = "run"
    # AUTOINCREMENT: an id is never reused after a delete, so a client still holding a
    # deleted run's id cannot post into (or download from) another run.
    __table_args__ = (
        UniqueConstraint("project", "name", name="uq_run_project_name"),
        Index("ix_run_project_creation_id", "project", "creation_id", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[float] = mapped_column(Float(precision=53))
    last_seen_at: Mapped[float] = mapped_column(Float(precision=53))
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    creation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    snapshots: Mapped[list[Snapshot]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )
    tag_rows: Mapped[list[RunTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="RunTag.tag",
    )

    @property
    def tags(self) -> list[str]:
        """The run's tags, sorted."""
        return [row.tag for row in self.tag_rows]

    def set_tags(self, tags: list[str]) -> None:
        """Replace the run's tags by ``tags`` (checked: ``ema_core.wire.check_tags``)."""
        kept = {row.tag: row for row in self.tag_rows if row.tag in tags}
        self.tag_rows = [kept.get(tag) or RunTag(tag=tag) for tag in sorted(set(tags))]


class RunTag(Base):
    """One tag of one run; (run_id, tag) is the primary key, ``tag`` is indexed (filters)."""

    __tablename__ = "run_tag"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class MetricSeries(Base):
    """One key of one run: the integer id its points are stored under (migration 0007)."""

    __tablename__ = "metric_series"
    __table_args__ = (
        UniqueConstraint("run_id", "key", name="uq_metric_series_run_key"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(512))


class MetricPoint(Base):
    """One scalar of one series at one step; (series_id, step) is the primary key."""

    __tablename__ = "metric_point"
    # The primary key (series_id, step) is the uniqueness guarantee and the read index (one
    # key's steps in order). On SQLite the table is WITHOUT ROWID: one b-tree, not two. The
    # series is an integer id (MetricSeries), not the run id and the key's text: PostgreSQL
    # spent ~20 % of an ingest's time comparing key texts in the index (migration 0007).
    # No foreign key (migration 0004): PostgreSQL checked it per inserted row at a cost above
    # the insert's; ingest locks the run's row, crud.delete_run deletes points.
    __table_args__ = {"sqlite_with_rowid": False}

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    value: Mapped[float] = mapped_column(NanFloat, nullable=True)
    wall_time: Mapped[float] = mapped_column(Float(precision=53))


class LatestMetric(Base):
    """Per (run, key): the point with the largest step, plus the series' extremes.

    The extremes (ignoring NaN) make a run's ``best`` eval value a lookup, not a scan.
    """

    __tablename__ = "latest_metric"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("run.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(NanFloat, nullable=True)
    wall_time: Mapped[float] = mapped_column(Float(precision=53))
    min_value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)
    min_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)
    max_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


SNAPSHOT_KINDS = ("snapshot", "posthoc")
"""``snapshot``: any uploaded snapshot (the best EMA, ...); ``posthoc``: a post-hoc EMA
snapshot (its file's metadata has ``snapshot_kind = "posthoc"``), kept under a budget."""


class Snapshot(Base):
    """A safetensors file of one averager's weights at one step, stored under ``data_dir``."""

    __tablename__ = "snapshot"
    __table_args__ = (
        Index("ix_snapshot_run_averager", "run_id", "averager"),
        Index("ix_snapshot_run_kind", "run_id", "kind"),
        # (run, averager, step) identifies a snapshot: a retried upload finds the first one.
        UniqueConstraint("run_id", "averager", "step", name="uq_snapshot_run_averager_step"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    averager: Mapped[str] = mapped_column(String(200))
    step: Mapped[int] = mapped_column(BigInteger)
    metric: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_path: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float(precision=53))
    kind: Mapped[str] = mapped_column(String(16), default="snapshot", server_default="snapshot")

    run: Mapped[Run] = relationship(back_populates="snapshots")


class LiveEvent(Base):
    """A websocket message stored for the other server processes (live fan-out on
    PostgreSQL, :mod:`emaboard_server.app.fanout`); kept for seconds. UNLOGGED on PostgreSQL
    (migration 0005); unused on SQLite."""

    __tablename__ = "live_event"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    topic: Mapped[str] = mapped_column(String(32))
    project: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float(precision=53))
