"""Pydantic models of the HTTP and websocket API (docs/api.md).

JSON has no NaN: a metric value travels as a number or as one of the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, in both directions (:mod:`ema_core.wire`, :data:`WireFloat`).
A client may post a bare ``NaN``/``Infinity`` inside a free-form object (``config``,
``summary``, snapshot ``metadata``): stored as it is, it would come back as ``null`` on
SQLite and fail the insert on PostgreSQL (whose JSON has no NaN), so :data:`JsonObject`
turns every non-finite float in it into its wire string.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
)
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from ema_core.metric_keys import MAX_KEY_LENGTH
from ema_core.wire import (
    MAX_JSON_DEPTH,
    check_creation_id,
    check_tags,
    encode_float,
    encode_json,
    json_depth,
    json_size,
)

RunStatus = Literal["running", "finished", "crashed"]
ResumeMode = Literal["never", "allow", "must"]  # ema_core.wire.RESUME_MODES


def check_depth(value: Any) -> Any:
    """Return ``value`` (parsed JSON) when it nests at most :data:`MAX_JSON_DEPTH` levels.

    Raises:
        ValueError: naming the limit (pydantic turns it into a 422 naming the field).
    """
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


class ObjectTooLarge(ValueError):
    """A free-form object (config, summary, metadata) over ``max_object_bytes`` as JSON."""

    def __init__(self, field: str, size: int, limit: int, merged_with: str | None = None) -> None:
        self.field = field
        once = f" once merged with {merged_with}" if merged_with else ""
        super().__init__(
            f"Invalid field {field!r}: {size} bytes of JSON{once}, over max_object_bytes "
            f"{limit}; keep it to hyperparameters and short results"
        )


def check_object_size(
    field: str, value: Any, limit: int, *, merged_with: str | None = None
) -> None:
    """Raise :class:`ObjectTooLarge` when ``value`` is over ``limit`` bytes as compact JSON
    (``merged_with`` names what it was merged with, for the message)."""
    size = json_size(value)
    if size > limit:
        raise ObjectTooLarge(field, size, limit, merged_with)


NUL_MESSAGE = "String should not contain NUL (\\u0000) characters"


def check_no_nul(value: Any) -> Any:
    """Return ``value`` (a string, a list of them, or None) unless a string holds NUL.

    PostgreSQL's text columns cannot store NUL; SQLite's can, so the API refuses it on both.

    Raises:
        PydanticCustomError: ``string_nul`` (a 422 naming the field).
    """
    strings = value if isinstance(value, list) else [value]
    if any(isinstance(text, str) and "\x00" in text for text in strings):
        raise PydanticCustomError("string_nul", NUL_MESSAGE)
    return value


def int_as_float(value: int) -> float:
    """A JSON integer metric value as the float it is stored as; beyond the range of a
    64-bit float, ±Infinity (as ``JSON.parse`` and Python's ``float("1e400")`` read it)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


NoNul = AfterValidator(check_no_nul)
# A free-form JSON object from a client: depth-checked before anything walks it recursively,
# then non-finite floats turned into the wire strings.
JsonObject = Annotated[dict[str, Any], BeforeValidator(check_depth), AfterValidator(encode_json)]
# A float that serializes NaN/±Inf as the strings above (responses never hold bare NaN).
WireFloat = Annotated[float, PlainSerializer(encode_float, return_type=float | str)]
# What a client may send for a value: a JSON number or one of the three strings.
# An integer is stored as a float: it becomes one here (it was a 500 above 2**63).
InValue = (StrictFloat | Annotated[StrictInt, AfterValidator(int_as_float)]
           | Literal["NaN", "Infinity", "-Infinity"])
# NUL in keys is refused by the ingest route (cheaper than a validator call per point).
MetricKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
# Run tags, checked by the one rule of ema_core.wire (sorted, without repeats).
Tags = Annotated[list[str], AfterValidator(check_tags)]
# A run's client-generated creation id, checked by the one rule of ema_core.wire.
CreationId = Annotated[str, AfterValidator(check_creation_id)]


class PointIn(TypedDict):
    """One posted point; ``wall_time`` defaults to the server's receive time (Unix s)."""

    key: MetricKey
    step: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    value: InValue
    wall_time: NotRequired[Annotated[float, Field(strict=True, allow_inf_nan=False)] | None]


class MetricBatch(BaseModel):
    """Body of ``POST /api/runs/{run_id}/metrics``."""

    model_config = ConfigDict(extra="forbid")
    # fail_fast: stop at the first bad point (a huge list of bad items must not cost seconds)
    points: Annotated[list[PointIn], Field(fail_fast=True)]


class IngestResult(BaseModel):
    """How many points a batch carried, how many were new, and how many were conflicts.

    A point at a (key, step) the run already has is not stored again. With the same value it
    is a retry (idempotent); with a different value it is counted in ``conflicts`` (and
    logged by the server): the stored value is kept.
    """

    accepted: int
    inserted: int
    conflicts: int = 0


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
    """Body of ``POST /api/runs``: create the run (project, name), or resume it.

    ``resume`` says what to do when the run exists: ``allow`` (the default) continues it,
    ``never`` creates a new run under the first free name ``name-2``, ``name-3``, …, and
    ``must`` continues it but answers 404 when it does not exist. ``tags`` are added to a
    resumed run's tags. ``creation_id``, generated by the client once per training, makes the
    request idempotent: when a run of the project has it, that run is resumed and answered
    whatever ``resume`` and ``name`` say (a retry after a lost reply), else the new run keeps
    it.
    """

    model_config = ConfigDict(extra="forbid")
    project: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    config: JsonObject | None = None
    tags: Tags | None = None
    resume: ResumeMode = "allow"
    creation_id: CreationId | None = None


class RunUpdate(BaseModel):
    """Body of ``PATCH /api/runs/{run_id}``; omitted fields stay as they are, ``tags``
    replaces the run's tags."""

    model_config = ConfigDict(extra="forbid")
    status: RunStatus | None = None
    summary: JsonObject | None = None
    tags: Tags | None = None


class BestValue(BaseModel):
    """The best value of one averager's primary eval metric, and its step."""

    metric: str
    value: WireFloat
    step: int


class RunOut(BaseModel):
    """A run as the API shows it; ``creation_id``: the client-generated id of the training
    that created it (``RunCreate.creation_id``), None when it was created without one."""

    id: int
    project: str
    name: str
    config: dict[str, Any]
    status: RunStatus
    created_at: float
    last_seen_at: float
    summary: dict[str, Any]
    tags: list[str]
    last_step: int | None
    best: dict[str, BestValue]
    creation_id: str | None


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
    kind: Literal["snapshot", "posthoc"]


class PosthocStep(BaseModel):
    """A step at which post-hoc EMAs can be rebuilt (a snapshot time)."""

    step: int
    time: float


class PosthocStorage(BaseModel):
    """Disk used by a run's snapshot files, in bytes, and its post-hoc budget."""

    posthoc_bytes: int
    snapshot_bytes: int
    budget_bytes: int
    over_budget: bool


class PosthocOut(BaseModel):
    """A run's post-hoc EMA: its snapshots, where it can be rebuilt, the well-posed grid."""

    time_unit: Literal["steps", "samples"] | None
    sigma_rels: list[float]
    steps: list[PosthocStep]
    grid: list[float]
    storage: PosthocStorage
    snapshots: list[SnapshotOut]


class PosthocCoefficient(BaseModel):
    """One snapshot's coefficient in a reconstruction."""

    snapshot_id: int
    averager: str
    step: int
    coefficient: float


class PosthocSolutionOut(BaseModel):
    """How a σ_rel at a step is rebuilt, and how well (``docs/ema_core.md``)."""

    sigma_rel: float
    gamma: float
    step: int
    time: float
    condition_number: float | None
    sum_abs: float
    residual: float
    ill_posed: list[str]
    coefficients: list[PosthocCoefficient]


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
