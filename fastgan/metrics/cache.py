"""The on-disk cache of fastgan.metrics (trained extractors, real-data features) and atomic writes."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

CACHE_ENV = "FASTGAN_CACHE"


def cache_dir() -> Path:
    """$FASTGAN_CACHE if set, else ~/.cache/fastgan; created on first use."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastgan")
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call write(file) on a temporary file beside path, then rename it over path.

    Readers see the old file or the complete new one, never a half-written one, even when two
    processes fill the same cache entry at once.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
