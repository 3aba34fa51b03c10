"""Batches of images for training: shuffled per epoch from a seed, sharded per rank, normalised to [-1, 1].

Everything random is decided here, in NumPy, and handed to the gatherer, so the C++ path
(fastgan._loader) and the NumPy path produce bit-identical batches:

- order of an epoch: ``np.random.default_rng([seed, epoch]).permutation(n)`` (``arange(n)`` without shuffle);
- ranks: with ``drop_last`` the order is cut to ``per_rank = n // (world_size * batch_size)`` batches per
  rank; without it the order is padded cyclically (its first samples repeat) to a multiple of
  ``world_size``. Rank r then takes ``order[r::world_size]``, as torch's DistributedSampler does;
- flips: ``np.random.default_rng([seed, epoch, 1]).integers(0, 2, size=len(cut_or_padded_order), dtype=uint8)``,
  drawn before sharding and sharded the same way;
- float output: ``x * float32(2/255) - 1`` in float32 (``FLOAT32_LUT``); bfloat16 output is that
  float32 rounded to nearest-even (``BFLOAT16_LUT``, bit patterns). The C++ path computes the same two
  float32 operations per pixel (``NORMALISE_SCALE``, ``NORMALISE_OFFSET``) instead of reading the table,
  and so does ``normalise`` on any device, for uint8 batches normalised where they are used.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .packed import ArrayDataset, PackedDataset

NORMALISE_SCALE = np.float32(2.0 / 255.0)
NORMALISE_OFFSET = np.float32(-1.0)  # adding -1 is subtracting 1, bit for bit
FLOAT32_LUT = np.arange(256, dtype=np.float32) * NORMALISE_SCALE + NORMALISE_OFFSET


def _bfloat16_bits(x: np.ndarray) -> np.ndarray:
    # Round to nearest, ties to even, on the float32 bit pattern; the inputs are finite.
    bits = x.view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


BFLOAT16_LUT = _bfloat16_bits(FLOAT32_LUT)


def normalise(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> float32 (or bfloat16) in [-1, 1] on their own device, bit for bit the Loader's float batches.

    Two eager float32 operations, each rounded (``FLOAT32_LUT``'s formula); not for a compiled region, where
    a fused multiply-add could round once. Loader(normalise_on_device=True) calls it after the transfer.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"normalise: images must be uint8 (as Loader(dtype=torch.uint8) gives); got {images.dtype}")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"normalise: dtype must be torch.float32 or torch.bfloat16; got {dtype}")
    out = images.to(torch.float32).mul_(float(NORMALISE_SCALE)).add_(float(NORMALISE_OFFSET))
    return out if dtype == torch.float32 else out.to(dtype)


_LUTS = {torch.uint8: None, torch.float32: FLOAT32_LUT, torch.bfloat16: BFLOAT16_LUT}
_NORMALISE = dict(scale=float(NORMALISE_SCALE), offset=float(NORMALISE_OFFSET))
_NATIVE_PIXELS = {torch.uint8: dict(dtype="uint8"), torch.float32: dict(dtype="float32", **_NORMALISE),
                  torch.bfloat16: dict(dtype="bfloat16", **_NORMALISE)}
BACKENDS = ("native", "python")  # fastgan._loader (C++), or the NumPy gatherer numpy_batches
_ALIASES = {"cpp": "native", "numpy": "python"}  # the earlier names, still accepted
_LOADER_ENV = "FASTGAN_LOADER"
_BUILD_HINT = "needs the compiled extension fastgan._loader; reinstall with pip install -e . to build it"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: np.random.default_rng([seed, epoch]).permutation(n)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def rank_order(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool, hflip: bool, drop_last: bool,
               rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The sample indices (int64) and flip flags (uint8 or None) that `rank` reads in `epoch`."""
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    if drop_last:
        order = order[:n // (world_size * batch_size) * world_size * batch_size]
    else:
        order = np.resize(order, _ceil_div(n, world_size) * world_size)
    flips = (np.random.default_rng([seed, epoch, 1]).integers(0, 2, size=len(order), dtype=np.uint8)
             if hflip else None)
    order = np.ascontiguousarray(order[rank::world_size], dtype=np.int64)
    if flips is not None:
        flips = np.ascontiguousarray(flips[rank::world_size])
    return order, flips


def numpy_batches(images: np.ndarray, labels: np.ndarray | None, order: np.ndarray, flips: np.ndarray | None,
                  batch_size: int, lut: np.ndarray | None):
    """The reference gatherer: yields (images, labels) NumPy batches equal bit for bit to fastgan._loader's."""
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = np.asarray(images[idx])
        if flips is not None:
            f = flips[start:start + batch_size].astype(bool)
            x[f] = x[f][..., ::-1]
        if lut is not None:
            x = lut[x]
        y = labels[idx] if labels is not None else np.zeros(len(idx), dtype=np.int64)
        yield x, y


def _native():
    try:
        from fastgan import _loader
    except ImportError:
        return None
    return _loader


def _parse_choice(value, what: str) -> str | None:
    """'native' or 'python' for a switch value (old names accepted, case and spaces ignored); None when unset."""
    if value is None:
        return None
    choice = str(value).strip().lower()
    if not choice:
        return None
    choice = _ALIASES.get(choice, choice)
    if choice not in BACKENDS:
        raise ValueError(f"{what} must be one of {', '.join(BACKENDS)}; got {value!r}")
    return choice


def _environment_choice() -> str | None:
    return _parse_choice(os.environ.get(_LOADER_ENV), _LOADER_ENV)


def choose_backend(backend: str | None = None) -> str:
    """The gatherer a Loader(backend=backend) uses: 'native' or 'python'.

    backend (else $FASTGAN_LOADER): "native" needs fastgan._loader and raises ImportError saying how to
    build it when it is missing; "python" is always available; unset chooses native when it is built and
    python otherwise, silently. Unknown values raise ValueError naming the choices. "cpp" and "numpy"
    are accepted as the earlier names of native and python.
    """
    if backend is not None and str(backend).strip():
        choice, forced_by = _parse_choice(backend, "Loader: backend"), f"Loader: backend={backend!r}"
    else:
        choice, forced_by = _environment_choice(), f"{_LOADER_ENV}={os.environ.get(_LOADER_ENV, '').strip()}"
    if choice == "python":
        return "python"
    if _native() is None:
        if choice == "native":
            raise ImportError(f"{forced_by} {_BUILD_HINT}")
        return "python"
    return "native"


def describe() -> str:
    """One line saying which data loader is in use and why (for `fastgan --version`), and for the C++ loader
    which vector form of its pixel loops this CPU runs (baseline, avx2 or avx512).

    Raises what Loader() would: ValueError for an unknown $FASTGAN_LOADER, ImportError when it forces
    native and fastgan._loader is not built.
    """
    chosen = choose_backend()
    if _environment_choice() is not None:
        why = f"{_LOADER_ENV}={os.environ[_LOADER_ENV].strip()}"
    else:
        why = "fastgan._loader built" if chosen == "native" else "fastgan._loader not built"
    if chosen == "native":
        why += f"; {_native().supported_isas()[-1]} pixel loops"
    return f"data loader: {chosen} ({why})"


def _as_dataset(source):
    if isinstance(source, (str, os.PathLike)):
        return PackedDataset(source)
    if isinstance(source, (tuple, list)):
        return ArrayDataset(*source)
    if hasattr(source, "images") and hasattr(source, "labels"):
        return source
    raise TypeError(f"Loader: expected a .fgd path, PackedDataset, ArrayDataset or (images, labels) tuple; "
                    f"got {type(source).__name__}")


class Loader:
    """Iterates (images, labels) batches; images are float in [-1, 1] (or uint8 when dtype=torch.uint8).

    On the CPU every batch is a zero-copy view of a buffer that returns to the loader's pool only when
    the last tensor viewing it is freed, so holding a batch is always safe; the C++ path keeps up to
    prefetch + 2 free buffers from one epoch to the next. On a CUDA device the batch is pinned and
    copied with non_blocking=True. The epoch is whatever set_epoch last set (0 at first).
    normalise_on_device: gather and transfer uint8 (a quarter of the bytes to copy, pin and send) and
    normalise on `device` with `normalise`; the batches are the same bits as without it. It pays where
    the device is fast and the host is the bottleneck (a GPU); on the CPU the C++ loader normalises
    faster than torch's three passes.
    backend: "native" (fastgan._loader, C++), "python" (NumPy), or None for $FASTGAN_LOADER, else native
    when it is built and python otherwise (see choose_backend); `.backend` says which is used.
    """

    def __init__(self, path_or_dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True, hflip: bool = False, dtype: torch.dtype = torch.float32, device="cpu",
                 num_threads: int | None = None, prefetch: int = 2, rank: int = 0, world_size: int = 1,
                 backend: str | None = None, normalise_on_device: bool = False):
        self.dataset = _as_dataset(path_or_dataset)
        n = len(self.dataset)
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be >= 1; got {batch_size}")
        if dtype not in _LUTS:
            raise ValueError(f"Loader: dtype must be torch.uint8, torch.float32 or torch.bfloat16; got {dtype}")
        if normalise_on_device and dtype == torch.uint8:
            raise ValueError("Loader: normalise_on_device makes float batches from uint8 ones; with dtype=torch.uint8 "
                             "leave it off (or pass dtype=torch.float32 / torch.bfloat16)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Loader: need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        if drop_last and n < batch_size * world_size:
            raise ValueError(f"Loader: dataset has {n} images, fewer than batch_size * world_size = "
                             f"{batch_size * world_size}; lower batch_size or pass drop_last=False")
        if prefetch < 1:
            raise ValueError(f"Loader: prefetch must be >= 1; got {prefetch}")
        self.num_threads = num_threads if num_threads is not None else min(4, os.cpu_count() or 1)
        if self.num_threads < 1:
            raise ValueError(f"Loader: num_threads must be >= 1; got {num_threads}")
        self.backend = choose_backend(backend)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.hflip, self.dtype, self.device = hflip, dtype, torch.device(device)
        self.normalise_on_device = normalise_on_device
        self._gathered = torch.uint8 if normalise_on_device else dtype  # what the gatherer writes
        self.prefetch, self.rank, self.world_size = prefetch, rank, world_size
        self.epoch = 0
        self._images = np.ascontiguousarray(self.dataset.images)
        labels = self.dataset.labels
        self._labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
        # The C++ path's batch buffers, kept from one epoch to the next: with fresh buffers every epoch,
        # faulting in and zeroing their pages took about 8% of the CPU time of a 32x32 epoch.
        self._native_pool = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:
            return n // (self.world_size * self.batch_size)
        per_rank = _ceil_div(n, self.world_size)
        return _ceil_div(per_rank, self.batch_size)

    def __iter__(self):
        order, flips = rank_order(len(self.dataset), self.batch_size, self.seed, self.epoch, self.shuffle,
                                  self.hflip, self.drop_last, self.rank, self.world_size)
        if self.backend == "python":
            batches = numpy_batches(self._images, self._labels, order, flips, self.batch_size, _LUTS[self._gathered])
            for x, y in batches:
                yield self._to_torch(x, y)
            return
        stream = _native().BatchStream(self._images, self._labels, order, flips, self.batch_size,
                                       num_threads=self.num_threads, prefetch=self.prefetch,
                                       pool=self._native_pool, **_NATIVE_PIXELS[self._gathered])
        self._native_pool = stream.pool
        # try/finally: an abandoned iterator (break, exception, garbage collection) joins its threads.
        try:
            for x, y in stream:
                yield self._to_torch(x, y)
        finally:
            stream.close()

    def _to_torch(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self._gathered == torch.bfloat16:
            images = torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
        else:
            images = torch.from_numpy(x)
        labels = torch.from_numpy(y)
        if self.device.type == "cuda":
            images = images.pin_memory().to(self.device, non_blocking=True)
            labels = labels.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            images, labels = images.to(self.device), labels.to(self.device)
        if self.normalise_on_device:
            images = normalise(images, self.dtype)
        return images, labels
