"""Pydantic models of the HTTP and websocket API (docs/api.md).

JSON has no NaN: a metric value travels as a number or as one of the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, in both directions (:func:`encode_float`, :data:`WireFloat`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
)
from typing_extensions import NotRequired, TypedDict

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
RunStatus = Literal["running", "finished", "crashed"]


def encode_float(value: float) -> float | str:
    """Return ``value`` itself when finite, else ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def wire_json(value: Any) -> Any:
    """``value`` (parsed JSON) with every non-finite float, at any depth, as its wire string.

    A client may post a bare ``NaN``/``Infinity`` inside a free-form object (``config``,
    ``summary``, snapshot ``metadata``): stored as it is, it would come back as ``null`` on
    SQLite and fail the insert on PostgreSQL (whose JSON has no NaN).
    """
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, dict):
        return {key: wire_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [wire_json(item) for item in value]
    return value


# A free-form JSON object from a client, non-finite floats turned into the wire strings.
JsonObject = Annotated[dict[str, Any], AfterValidator(wire_json)]
# A float that serializes NaN/±Inf as the strings above (responses never hold bare NaN).
WireFloat = Annotated[float, PlainSerializer(encode_float, return_type=float | str)]
# What a client may send for a value: a JSON number or one of the three strings.
InValue = StrictFloat | StrictInt | Literal["NaN", "Infinity", "-Infinity"]
MetricKey = Annotated[str, Field(min_length=1, max_length=512)]


class PointIn(TypedDict):
    """One posted point; ``wall_time`` defaults to the server's receive time (Unix s)."""

    key: MetricKey
    step: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    value: InValue
    wall_time: NotRequired[Annotated[float, Field(strict=True, allow_inf_nan=False)] | None]


class MetricBatch(BaseModel):
    """Body of ``POST /api/runs/{run_id}/metrics``."""

    model_config = ConfigDict(extra="forbid")
    points: list[PointIn]


class IngestResult(BaseModel):
    """How many points a batch carried and how many were new (the rest were retries)."""

    accepted: int
    inserted: int


class PointOut(BaseModel):
    """One stored point."""

    key: str
    step: int
    value: WireFloat
    wall_time: float


class Series(BaseModel):
    """One downsampled series as parallel arrays; values may hold the non-finite strings."""

    steps: list[int]
    values: list[float | str]
    wall_times: list[float]


class SeriesResponse(BaseModel):
    """Answer of ``GET /api/runs/{run_id}/metrics``."""

    series: dict[str, Series]


class RunCreate(BaseModel):
    """Body of ``POST /api/runs`` (create-or-resume by project and name)."""

    model_config = ConfigDict(extra="forbid")
    project: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    config: JsonObject | None = None


class RunUpdate(BaseModel):
    """Body of ``PATCH /api/runs/{run_id}``; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    status: RunStatus | None = None
    summary: JsonObject | None = None


class BestValue(BaseModel):
    """The best value of one averager's primary eval metric, and its step."""

    metric: str
    value: WireFloat
    step: int


class RunOut(BaseModel):
    """A run as the API shows it."""

    id: int
    project: str
    name: str
    config: dict[str, Any]
    status: RunStatus
    created_at: float
    last_seen_at: float
    summary: dict[str, Any]
    last_step: int | None
    best: dict[str, BestValue]


class SnapshotOut(BaseModel):
    """A stored snapshot's metadata; ``download_url`` fetches the file."""

    id: int
    run_id: int
    averager: str
    step: int
    metric: str | None
    value: WireFloat | None
    sha256: str
    size_bytes: int
    metadata: dict[str, Any]
    created_at: float
    download_url: str


class Health(BaseModel):
    """Answer of ``GET /api/health``."""

    status: Literal["ok"]
    version: str


class ErrorDetail(BaseModel):
    """One validation problem: where (``loc``) and what."""

    loc: list[str | int]
    message: str


class ErrorBody(BaseModel):
    """The inside of every error answer."""

    status: int
    message: str
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    """Every error, whatever the route: ``{"error": {...}}``."""

    error: ErrorBody
