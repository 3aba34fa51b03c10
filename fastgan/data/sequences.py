"""Batches of sequences for the recurrent families: real values (N, T, F) or tokens (N, T).

The order follows the image Loader's rules (`rank_order`): each epoch is
``np.random.default_rng([seed, epoch]).permutation(n)``, cut to whole global batches, and rank r takes
``order[r::world_size]``. A run resumes by batch count: `batches(start)` continues at global batch number
`start` without reading the batches before it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..atomic import require_regular_file
from .loader import rank_order
from .sines import validate_sequences


def load_sequences(path: str | os.PathLike) -> np.ndarray:
    """A user's .npy file of sequences as float32 (N, T, F), or an error naming the problem."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"{path}: sequence data must be a .npy file of shape (N, T, F)")
    require_regular_file(path, "sequence file")  # a FIFO would block np.load
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        # allow_pickle=False refuses object arrays, whose loading would run code from the file.
        raise ValueError(f"{path}: not a plain numeric .npy array: {e}") from None
    return validate_sequences(array, str(path))


class SequenceLoader:
    """Shuffled batches of a (N, ...) array as tensors on `device` (float32 values or int64 tokens).

    Only whole batches are yielded (drop_last), so every step sees batch_size rows per rank.
    """

    def __init__(self, array: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device="cpu"):
        array = np.asarray(array)
        if array.dtype.kind not in "fi" or array.ndim < 2:
            raise ValueError(f"SequenceLoader: expected a numeric array (N, T, ...); got {array.dtype} of shape "
                             f"{array.shape}")
        if batch_size < 1:
            raise ValueError(f"SequenceLoader: batch_size must be >= 1; got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"SequenceLoader: need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
        if len(array) < batch_size * world_size:
            raise ValueError(f"SequenceLoader: {len(array)} sequences are fewer than one global batch of "
                             f"batch_size * world_size = {batch_size * world_size}; lower batch_size")
        dtype = np.float32 if array.dtype.kind == "f" else np.int64
        self.array = np.ascontiguousarray(array, dtype=dtype)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device)

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return len(self.array) // (self.batch_size * self.world_size)

    def epoch(self, epoch: int, skip: int = 0):
        """This rank's batches of one epoch, from batch number `skip` on."""
        order, _ = rank_order(len(self.array), self.batch_size, self.seed, epoch, shuffle=True, hflip=False,
                              drop_last=True, rank=self.rank, world_size=self.world_size)
        for start in range(skip * self.batch_size, len(order), self.batch_size):
            yield torch.from_numpy(self.array[order[start:start + self.batch_size]]).to(self.device)

    def batches(self, start: int = 0):
        """Endless batches from global batch number `start` on, across epochs."""
        epoch, skip = divmod(start, len(self))
        while True:
            yield from self.epoch(epoch, skip)
            epoch, skip = epoch + 1, 0
