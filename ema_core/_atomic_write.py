"""Atomic file replacement (private; no torch, the server's modules use it too).

:func:`write_atomically` writes through a temporary file in the destination's folder (named
``.<name>.<random>.tmp``, so concurrent writers never share one) and renames it over the
destination (``os.replace``): a reader sees the old file or the new one, never a partial
one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: ``path``'s folder does not exist.
        Exception: whatever ``write`` raises (the temporary file is removed first).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
