"""Route dependencies: the app state, a read session and the run a path names (the token:
:mod:`.auth`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from emaboard_server.app import crud
from emaboard_server.app.models import Run
from emaboard_server.app.state import AppState


def app_state(request: Request) -> AppState:
    """The :class:`AppState` of the app serving this request."""
    state: AppState = request.app.state.emaboard
    return state


async def get_state(request: Request) -> AppState:
    """Dependency form of :func:`app_state` (async: no threadpool hop per request)."""
    return app_state(request)


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A session for reads, closed after the response."""
    with state.db.reading() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


MAX_ID = 2**63 - 1  # a signed 64-bit integer: the largest step a database holds
# Run and snapshot ids are integer columns: 64-bit on SQLite, 32-bit on PostgreSQL.
MAX_ROW_ID = 2**31 - 1
_DIGITS = re.compile(r"-?[0-9]+")  # a sign only for the "must be >= 0" message


def decimal_digits(value: Any) -> Any:
    """Let only decimal digits (and a minus, refused later as < 0) through to int parsing:
    pydantic's lax mode would read ``1.0``, ``+1``, `` 1`` and ``1_0`` as integers, and an
    id has one spelling."""
    if isinstance(value, str) and _DIGITS.fullmatch(value) is None:
        raise PydanticCustomError(
            "int_parsing", "Input should be a valid integer, unable to parse string as an integer")
    return value


# Integers from the path, query or a form field: digits only, bounded so that an
# out-of-range number is a 422, not a database error.
Digits = BeforeValidator(decimal_digits)
RunId = Annotated[int, Path(ge=0, le=MAX_ROW_ID), Digits]
SnapshotId = Annotated[int, Path(ge=0, le=MAX_ROW_ID), Digits]


def get_run(run_id: RunId, session: SessionDep) -> Run:
    """The run named by the path's ``run_id``, read in the request's session.

    Raises:
        RunNotFound: No run has this id (answered 404 ``Run not found``).
    """
    return crud.require_run(session, run_id=run_id)


# A route that reads one run takes ``run: RunDep`` (as the FastAPI template's CurrentUser).
RunDep = Annotated[Run, Depends(get_run)]
