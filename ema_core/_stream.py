"""A streaming Monitor's run on rank 0 (private): open, summary, finish.

:class:`Stream` owns what only the streaming process has: the run's spool in its run
directory, the background :class:`~ema_core.sender.Sender` (started at once), the run
summary (PATCHed by the sender, kept in the spool for ``emaboard sync``; :class:`RunSummary`
keeps what a Monitor has set, on every rank) and the finish sequence: flush within a
deadline, then the run's final status, sent while the deadline allows and recorded in the
spool so that ``emaboard sync`` sends it when the server was away.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from time import sleep
from typing import Any

from ema_core._run_dir import open_spool
from ema_core._sender_config import SenderConfig
from ema_core.sender import Sender
from ema_core.spool import Spool
from ema_core.transport import ApiClient, RetryableError, TransportError

logger = logging.getLogger(__name__)


class Stream:
    """The spool and sender of one run on rank 0; the sender runs once this returns.

    Args:
        api: the HTTP client (closed once the sender's threads have stopped after
            :meth:`finish`).
        run_dir: the run's local directory (spool, ``snapshots/``).
        run: ``(project, name)``.
        config_json: the run's config as JSON text (NaN/±Inf as the API strings).
        resume: ``"never"``, ``"allow"`` or ``"must"``.
        tags: the run's checked tags.
        config: the sender's bounds and timings.

    Raises:
        ValueError: as :func:`ema_core._run_dir.open_spool`.
    """

    def __init__(
        self, api: ApiClient, run_dir: Path, run: tuple[str, str], config_json: str,
        resume: str, tags: list[str], config: SenderConfig,
    ) -> None:
        project, name = run
        self.run_dir = run_dir
        self.spool = open_spool(run_dir, project, name, config_json, resume, tags)
        self.sender = Sender(api, self.spool, (project, name, json.loads(config_json)),
                             run_dir / "snapshots", config)
        self.sender.start()

    def set_summary(self, entries: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        """Queue ``entries`` for the sender to PATCH; keep the whole ``summary`` in the spool."""
        self.sender.update_summary(**entries)
        self.spool.set_meta(summary=json.dumps(summary))

    def finish(self, status: str, timeout_s: float) -> None:
        """Flush within ``timeout_s`` seconds, then send the final ``status``; never raises a
        network error. Whatever the server did not take stays in the spool."""
        if not self.sender.close(timeout_s):
            logger.warning("emaboard: unsent data left in %s; upload it with `emaboard sync %s`",
                           self.spool.path, self.run_dir)
        send_final_status(self.sender, self.spool, status)


class RunSummary:
    """The run summary set so far; on rank 0 each change also goes to the ``stream``."""

    def __init__(self, stream: Stream | None) -> None:
        self.entries: dict[str, Any] = {}
        self._stream = stream

    @property
    def averagers(self) -> dict[str, Any]:
        """Averager name → description (``ema_core._watched.describe_averager``) so far."""
        return dict(self.entries.get("averagers", {}))

    def set(self, **entries: Any) -> None:
        """Merge ``entries`` into the summary: PATCHed by the sender, kept in the spool."""
        self.entries.update(entries)
        if self._stream is not None:
            self._stream.set_summary(entries, self.entries)


def send_final_status(sender: Sender, spool: Spool, status: str) -> None:
    """Mark the run ``status`` on the server while the sender's deadline allows, then close.

    The spool records the status first (``status_sent="0"``, ``"1"`` once the server has it),
    so ``emaboard sync`` sends it later when the server could not be reached now. A retryable
    failure (a restarting server) is retried with doubling delays from
    ``initial_backoff_s``; any other failure is logged, never raised. The API client and the
    spool close once the sender's threads have stopped.
    """
    spool.set_meta(status=status, status_sent="0")
    delay_s = sender.config.initial_backoff_s
    while sender.run_id is not None and (remaining_s := sender.remaining_s()) > 0.05:
        try:
            sender.api.set_status(sender.run_id, status, timeout_s=remaining_s)
            spool.set_meta(status_sent="1")
            break
        except RetryableError:  # restarting: try again while finish() has time
            sleep(min(delay_s, max(0.0, sender.remaining_s() - 0.05)))
            delay_s *= 2
        except TransportError as exc:
            logger.warning("emaboard: could not mark run %s %s: %s", sender.run_id, status, exc)
            break
    sender.after_stop(sender.api.close)  # now, or when a stuck request ends
    sender.after_stop(spool.close)
