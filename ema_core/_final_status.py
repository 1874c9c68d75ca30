"""The run's final status, sent by :meth:`ema_core.client.Monitor.finish` (private)."""

from __future__ import annotations

import logging
from time import sleep

from ema_core.sender import Sender
from ema_core.spool import Spool
from ema_core.transport import RetryableError, TransportError

logger = logging.getLogger(__name__)


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
