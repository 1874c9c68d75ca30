"""Liveness: ``GET /api/health`` (never needs the token)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from emaboard_server.app.schemas import Health

router = APIRouter(tags=["health"])


def package_version() -> str:
    """The installed emaboard version, or ``0.0.0`` when run from an uninstalled tree."""
    try:
        return version("emaboard")
    except PackageNotFoundError:
        return "0.0.0"


@router.get("/health", response_model=Health)
async def read_health() -> Health:
    """Report that the server is up, with its version."""
    return Health(status="ok", version=package_version())
