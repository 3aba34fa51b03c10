"""Sequence data for recurrent GANs and VAEs: RCGAN's and TimeGAN's sine waves, and a validator for user arrays."""
from __future__ import annotations

import math

import numpy as np

SINE_FREQUENCY = (1.0, 5.0)        # cycles per sequence
SINE_PHASE = (-math.pi, math.pi)
SINE_AMPLITUDE = (0.1, 0.9)
#: TimeGAN's sines (jsyoon0823/TimeGAN, data_loading.py): frequency (radians per step) and phase ranges, size
TIMEGAN_FREQUENCY = (0.0, 0.1)
TIMEGAN_PHASE = (0.0, 0.1)
TIMEGAN_SHAPE = (10000, 24, 5)


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


def timegan_sines(n: int = TIMEGAN_SHAPE[0], length: int = TIMEGAN_SHAPE[1], features: int = TIMEGAN_SHAPE[2],
                  seed: int = 0) -> np.ndarray:
    """n sine waves in [0, 1], float32 (n, length, features), as TimeGAN generates them (Yoon et al. 2019;
    jsyoon0823/TimeGAN, data_loading.py): the benchmark of TimeGAN, TimeVAE, Diffusion-TS and their successors.

    Feature k of each sequence is (sin(f * t + phi) + 1) / 2, t = 0..length-1, with f ~ U(0, 0.1) (radians per
    step) and phi ~ U(0, 0.1) drawn independently per sequence and feature. At the default 24 steps the
    argument stays within [0, 2.5], so the values lie in [0.5, 1]: slow, rising-then-flattening arcs.
    """
    if n < 0 or length < 1 or features < 1:
        raise ValueError(f"timegan_sines: need n >= 0, length >= 1, features >= 1; got n={n}, length={length}, "
                         f"features={features}")
    rng = np.random.default_rng(seed)
    f = rng.uniform(*TIMEGAN_FREQUENCY, size=(n, 1, features))
    phi = rng.uniform(*TIMEGAN_PHASE, size=(n, 1, features))
    t = np.arange(length, dtype=np.float64)[None, :, None]
    return ((np.sin(f * t + phi) + 1) / 2).astype(np.float32)


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
