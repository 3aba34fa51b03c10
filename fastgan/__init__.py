"""fastgan: fast, exact GAN training for PyTorch."""
from . import functional, losses, nn, ops, reference
from .backend import backend

__version__ = "0.1.0"

__all__ = ["functional", "losses", "nn", "ops", "reference", "backend", "data", "models", "train", "metrics"]


def __getattr__(name):
    # The heavier subpackages load on first use, so `import fastgan` stays cheap for loss-only users.
    if name in ("data", "models", "train", "metrics"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
