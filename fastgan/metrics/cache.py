"""The on-disk cache of fastgan.metrics: trained extractors and real-data features (written with fastgan.atomic)."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FASTGAN_CACHE"


def cache_dir() -> Path:
    """$FASTGAN_CACHE if set, else ~/.cache/fastgan; created on first use."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastgan")
    path.mkdir(parents=True, exist_ok=True)
    return path
