"""Creating or resuming the run on the server: the run-resume negotiation (private).

The sender's first request. Before the server has named the run, the spool's ``resume``
(``"never"``, ``"allow"``, ``"must"``, as the Monitor was created) decides, and the server
answers with the run it chose: ``run`` itself, or ``run-2`` (``run-3``, …) when
``resume="never"`` found ``run`` taken. That name is kept in the spool (``server_name``) at
once; from then on this training always continues that run with ``resume="allow"``: after
the run was deleted on the server (``RunGone``), from a spool a later Monitor resumes, and
from ``emaboard sync`` (:func:`ema_core.spool.sync_spool`).

Each request carries the spool's ``creation_id`` (a ``uuid4`` hex, generated and stored the
first time this module negotiates for the spool, so a restart of the training from its
spool and ``emaboard sync`` send the same one): a create whose reply was lost after the
server committed it is answered, when retried, with the run it created, not ``run-2``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from ema_core.transport import ApiClient

if TYPE_CHECKING:  # spool.sync_spool negotiates through this module too
    from ema_core.spool import Spool


def create_or_resume_run(
    api: ApiClient, spool: Spool, run: tuple[str, str, dict[str, Any]], server_name: str | None
) -> tuple[int, str, bool]:
    """Create or resume the run ``(project, name, config)`` with the spool's tags.

    Args:
        server_name: the name the server gave this training's run, if it gave one already.

    Returns:
        ``(run id, server name, renamed)``: ``renamed`` when the server has just named the
        run otherwise than ``name`` (``resume="never"`` found ``name`` taken); the caller
        says so in its log.

    Raises:
        TransportError: as :meth:`ema_core.transport.ApiClient.create_run`.
    """
    project, name, config = run
    meta = spool.meta()
    tags = json.loads(meta.get("tags", "[]"))
    creation_id = meta.get("creation_id")
    if creation_id is None:  # stored before it is sent: every retry sends the same one
        creation_id = uuid.uuid4().hex
        spool.set_meta(creation_id=creation_id)
    if server_name is not None:
        created = api.create_run(project, server_name, config, "allow", tags, creation_id)
        return created.id, server_name, False
    created = api.create_run(project, name, config, meta.get("resume", "allow"), tags,
                             creation_id)
    spool.set_meta(server_name=created.name)
    return created.id, created.name, created.name != name
