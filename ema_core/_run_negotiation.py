"""Creating or resuming the run on the server: the run-resume negotiation (private).

The sender's first request. Before the server has named the run, the spool's ``resume``
(``"never"``, ``"allow"``, ``"must"``, as the Monitor was created) decides, and the server
answers with the run it chose: ``run`` itself, or ``run-2`` (``run-3``, …) when
``resume="never"`` found ``run`` taken. That name is kept in the spool (``server_name``) at
once; from then on this training always continues that run with ``resume="allow"``: after
the run was deleted on the server (``RunGone``), and from a spool a later Monitor resumes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ema_core.spool import Spool
from ema_core.transport import ApiClient

logger = logging.getLogger(__name__)


def create_or_resume_run(
    api: ApiClient, spool: Spool, run: tuple[str, str, dict[str, Any]], server_name: str | None
) -> tuple[int, str]:
    """Create or resume the run ``(project, name, config)`` with the spool's tags.

    Args:
        server_name: the name the server gave this training's run, if it gave one already.

    Returns:
        ``(run id, server name)``.

    Raises:
        TransportError: as :meth:`ema_core.transport.ApiClient.create_run`.
    """
    project, name, config = run
    meta = spool.meta()
    tags = json.loads(meta.get("tags", "[]"))
    if server_name is not None:
        return api.create_run(project, server_name, config, "allow", tags).id, server_name
    created = api.create_run(project, name, config, meta.get("resume", "allow"), tags)
    spool.set_meta(server_name=created.name)
    if created.name != name:
        logger.warning(
            "emaboard: run %s/%s already exists; this training streams to %s/%s (pass "
            "resume='allow' to continue %s/%s instead)", project, name, project,
            created.name, project, name,
        )
    return created.id, created.name
