"""Sequence data for recurrent GANs and VAEs: RCGAN's sine waves and a validator for user arrays."""
from __future__ import annotations

import math

import numpy as np

SINE_FREQUENCY = (1.0, 5.0)        # cycles per sequence
SINE_PHASE = (-math.pi, math.pi)
SINE_AMPLITUDE = (0.1, 0.9)


def sines(n: int, length: int = 30, features: int = 1, seed: int = 0) -> np.ndarray:
    """n random sine waves, float32 (n, length, features), as in RCGAN (Esteban et al. 2017, sec. 4.1).

    Each feature of each sequence is x_t = A * sin(2 * pi * f * t / length + phi), t = 1..length, with
    f ~ U[1, 5] (cycles per sequence), phi ~ U[-pi, pi] and A ~ U[0.1, 0.9] drawn independently, as in
    the RCGAN code; the values therefore lie in [-0.9, 0.9].
    """
    if n < 0 or length < 1 or features < 1:
        raise ValueError(f"sines: need n >= 0, length >= 1, features >= 1; got n={n}, length={length}, "
                         f"features={features}")
    rng = np.random.default_rng(seed)
    f = rng.uniform(*SINE_FREQUENCY, size=(n, 1, features))
    phi = rng.uniform(*SINE_PHASE, size=(n, 1, features))
    amplitude = rng.uniform(*SINE_AMPLITUDE, size=(n, 1, features))
    t = np.arange(1, length + 1, dtype=np.float64)[None, :, None]
    return (amplitude * np.sin(2 * np.pi * f * t / length + phi)).astype(np.float32)


def validate_sequences(array, name: str = "sequences") -> np.ndarray:
    """A user's sequence data as a contiguous float32 array (N, T, F), or a ValueError naming the problem."""
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"{name}: expected an array of shape (N, T, F) (sequences, time steps, features); "
                         f"got shape {a.shape}")
    if min(a.shape) == 0:
        raise ValueError(f"{name}: every dimension of (N, T, F) must be non-empty; got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name}: expected real numbers; got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values (or values beyond float32's range)")
    return a
