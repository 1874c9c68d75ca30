"""Training-framework integrations (optional dependencies, imported lazily).

- :mod:`ema_core.integrations.lightning` — ``EmaboardCallback`` for PyTorch Lightning
  (``lightning.pytorch`` or the older ``pytorch_lightning`` import name).
- :mod:`ema_core.integrations.transformers` — ``EmaboardTrainerCallback`` for the
  Hugging Face ``transformers.Trainer``.

Importing this package imports neither framework; each submodule imports its own, and
raises an ``ImportError`` naming the package to install when it is missing.
"""

__all__: list[str] = []
