"""Errors raised by ema_core.

Every error is a subclass of both :class:`EmaCoreError` and the built-in exception a caller
would expect (``ValueError``, ``KeyError``, ``TypeError``), so ``except ValueError`` keeps
working. Messages name the offending value and the remedy.

Class tree::

    EmaCoreError
    ├── InvalidDecayError (ValueError)        decay, schedule or interval out of range
    ├── NoFloatParametersError (ValueError)   the model has nothing to average
    ├── ModelMismatchError (ValueError)       keys or shapes differ from the shadow's
    ├── StateDictError (ValueError)           a resume state that does not fit this averager
    ├── UnknownAveragerError (KeyError)       an averager name that does not exist
    └── SnapshotFormatError (TypeError)       a file that is not a safetensors snapshot

    IllPosedReconstructionWarning (UserWarning)   a post-hoc EMA target the snapshots
                                                  cannot rebuild accurately
"""

from __future__ import annotations

__all__ = [
    "EmaCoreError",
    "IllPosedReconstructionWarning",
    "InvalidDecayError",
    "ModelMismatchError",
    "NoFloatParametersError",
    "SnapshotFormatError",
    "StateDictError",
    "UnknownAveragerError",
]


class EmaCoreError(Exception):
    """Base class of every error raised on purpose by ema_core."""


class InvalidDecayError(EmaCoreError, ValueError):
    """A decay, schedule parameter or update interval outside its valid range."""


class NoFloatParametersError(EmaCoreError, ValueError):
    """The model has no floating-point parameters, so there is nothing to average."""


class ModelMismatchError(EmaCoreError, ValueError):
    """The model's state-dict keys, shapes or dtypes differ from those of the shadow."""


class StateDictError(EmaCoreError, ValueError):
    """A state dict passed to ``load_state_dict`` does not match this averager."""


class UnknownAveragerError(EmaCoreError, KeyError):
    """An averager name that this object does not hold."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; show the plain message instead.
        return str(self.args[0]) if self.args else ""


class SnapshotFormatError(EmaCoreError, TypeError):
    """A file that is not a safetensors snapshot written by ema_core."""


class IllPosedReconstructionWarning(UserWarning):
    """A post-hoc EMA target that the stored snapshots rebuild only poorly or noisily.

    Raised as a warning (``warnings.warn``), never as an error: the reconstruction is still
    the best least-squares fit; the message says why it is unreliable and what to change.
    """
