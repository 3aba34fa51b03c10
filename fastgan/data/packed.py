"""The two dataset kinds the Loader reads: PackedDataset (a memory-mapped .fgd file) and ArrayDataset."""
from __future__ import annotations

import os
import zlib

import numpy as np

from ..atomic import require_regular_file
from .format import Header, read_header


class ArrayDataset:
    """An in-memory image dataset with the same surface as PackedDataset: uint8 (N, C, H, W) + int64 labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"ArrayDataset: images must be uint8 (N, C, H, W); got {images.dtype} {images.shape}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"ArrayDataset: labels must be integers of shape ({len(images)},); "
                                 f"got {labels.dtype} {labels.shape}")
            labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.images = np.ascontiguousarray(images)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def __getitem__(self, i):
        return self.images[i]

    def __repr__(self) -> str:
        return f"ArrayDataset({len(self)} images, shape={self.shape}, labels={self.labels is not None})"


class PackedDataset:
    """A .fgd file opened read-only: `images` is a memory-mapped uint8 (N, C, H, W) view of the file.

    The header is validated against the file size before any payload byte is mapped. With
    verify=True (the default) the CRC32 of the payload is checked once at open; zlib runs at well
    over 1 GB/s, so this costs little next to a single training epoch.

    The file must not shrink while it is open: reading a page of the mapping past the new end of the file
    makes the kernel send SIGBUS, which kills the process (Python cannot catch it). check_size() turns
    that into a ValueError where it can be seen cheaply: at open, and every time the length is asked for,
    which fastgan.data.Loader does at the start of each epoch (one fstat call). A file truncated in the
    middle of an epoch can still end the process; docs/data-format.md says how to avoid it.
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = os.fspath(require_regular_file(path, ".fgd dataset"))
        # Kept open, so that check_size looks at the very file that is mapped: a new file renamed over the path
        # leaves the mapped one intact and is no danger, a truncation of the mapped one is.
        self._file = open(self.path, "rb")
        self.header: Header = read_header(self.path)
        h = self.header
        raw = np.memmap(self._file, dtype=np.uint8, mode="r")
        if len(raw) != h.file_size:
            raise ValueError(f"{self.path}: the file changed size while being opened "
                             f"({h.file_size} -> {len(raw)} bytes)")
        if verify:
            crc = zlib.crc32(raw[h.images_offset:])
            if crc != h.checksum:
                raise ValueError(f"{self.path}: checksum mismatch: payload CRC32 is {crc:#010x}, header says "
                                 f"{h.checksum:#010x}; the file is corrupt, re-create it with `fastgan prepare`")
        self.images = raw[h.images_offset:h.labels_offset].reshape(h.count, h.channels, h.height, h.width)
        # Copied out: 8 bytes per image, and the labels offset need not be 8-byte aligned.
        self.labels = (np.frombuffer(raw[h.labels_offset:], dtype="<i8").astype(np.int64)
                       if h.has_labels else None)

    def check_size(self) -> None:
        """ValueError if the mapped file no longer has the size its header gave at open (truncated in place)."""
        size = os.fstat(self._file.fileno()).st_size
        if size != self.header.file_size:
            raise ValueError(f"{self.path}: the file changed size while in use ({self.header.file_size} -> {size} "
                             f"bytes); reading on could crash the process (SIGBUS). Do not rewrite a .fgd file "
                             f"that a run reads: write a new one (`fastgan prepare` replaces it atomically)")

    def __len__(self) -> int:
        self.check_size()  # the Loader asks at the start of each epoch: see the class docstring
        return self.header.count

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.header.channels, self.header.height, self.header.width)

    def __getitem__(self, i):
        return self.images[i]

    def __repr__(self) -> str:
        return f"PackedDataset({self.path!r}, {self.header.count} images, shape={self.shape}, labels={self.labels is not None})"
