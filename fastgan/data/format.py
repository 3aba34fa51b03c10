"""The .fgd packed dataset format: header layout, the header validator, and an atomic writer.

A .fgd file is a 64-byte little-endian header, then N*C*H*W uint8 pixels (NCHW), then, when the
header says so, N little-endian int64 labels. docs/data-format.md has the byte-offset table.
"""
from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fastgan.atomic import AtomicFile, require_regular_file

MAGIC = b"\x89FGD\r\n\x1a\n"
FORMAT_VERSION = 1
HEADER_SIZE = 64
MAX_COUNT = 1 << 40
MAX_SIDE = 65536
MAX_CHANNELS = 4
LAYOUT_NCHW = 0
LABELS_NONE = 0
LABELS_INT64 = 1

# magic, version, header size, count, channels, height, width, layout, label type, CRC32, 16 reserved
_HEADER = struct.Struct("<8sIIQIIIIII16x")
assert _HEADER.size == HEADER_SIZE


@dataclasses.dataclass(frozen=True)
class Header:
    version: int
    count: int
    channels: int
    height: int
    width: int
    layout: int
    label_type: int
    checksum: int
    images_offset: int
    labels_offset: int
    file_size: int

    @property
    def has_labels(self) -> bool:
        return self.label_type == LABELS_INT64


def human_size(n: int) -> str:
    # Digit-for-digit the same as human_size in csrc/header.cpp (both round the double correctly).
    if n < 1000:
        return f"{n} bytes"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.1f} GB"


def parse_header_py(data: bytes, file_size: int) -> Header:
    """The pure-Python validator; same checks, order and messages as fastgan._loader.parse_header."""
    if file_size == 0:
        raise ValueError("empty file (0 bytes); expected a .fgd dataset written by fastgan.data.prepare")
    if file_size < HEADER_SIZE:
        raise ValueError(f"truncated header: file has {file_size} bytes, a .fgd header has 64")
    if len(data) < HEADER_SIZE:
        raise ValueError(f"parse_header needs the first 64 bytes of the file; got {len(data)}")
    if data[:8] != MAGIC:
        raise ValueError("not a .fgd file (bad magic bytes); make one with `fastgan prepare`")
    magic, version, header_size, count, channels, height, width, layout, label_type, checksum = _HEADER.unpack(
        bytes(data[:HEADER_SIZE]))
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported format version {version}; this fastgan reads version 1")
    if header_size != HEADER_SIZE:
        raise ValueError(f"bad header size {header_size}; version 1 headers are 64 bytes")
    if any(data[48:HEADER_SIZE]):
        raise ValueError("reserved header bytes 48..63 are not zero; the file is corrupt")
    if layout != LAYOUT_NCHW:
        raise ValueError(f"unsupported layout {layout}; version 1 stores NCHW (layout 0)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"bad channel count {channels}; expected 1 to 4")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"bad image size {height}x{width}; expected 1 to 65536 pixels per side")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"bad image count {count}; expected 1 to 2**40")
    if label_type not in (LABELS_NONE, LABELS_INT64):
        raise ValueError(f"bad label type {label_type}; expected 0 (none) or 1 (int64)")
    image_bytes = count * channels * height * width
    expected = HEADER_SIZE + image_bytes + (8 * count if label_type == LABELS_INT64 else 0)
    if expected > file_size:
        raise ValueError(f"truncated: header says {count} images ({human_size(expected)}), "
                         f"file has {human_size(file_size)}")
    if expected < file_size:
        raise ValueError(f"header says {count} images ({human_size(expected)}), but the file has "
                         f"{file_size - expected} extra bytes; the file is corrupt")
    return Header(version, count, channels, height, width, layout, label_type, checksum,
                  HEADER_SIZE, HEADER_SIZE + image_bytes, file_size)


def parse_header(data: bytes, file_size: int) -> Header:
    """Validate a header with the native validator when the extension is built, else parse_header_py."""
    try:
        from fastgan import _loader
    except ImportError:
        return parse_header_py(data, file_size)
    return Header(**_loader.parse_header(bytes(data[:HEADER_SIZE]), file_size))


def read_header(path: str | os.PathLike) -> Header:
    """The validated header of a .fgd file; ValueError names the file and the problem (a FIFO, device or socket
    is refused before it is opened: reading one would block)."""
    require_regular_file(path, ".fgd dataset")
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        data = f.read(HEADER_SIZE)
    try:
        return parse_header(data, file_size)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from None


def pack_header(count: int, channels: int, height: int, width: int, has_labels: bool, checksum: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, count, channels, height, width, LAYOUT_NCHW,
                        LABELS_INT64 if has_labels else LABELS_NONE, checksum)


class FgdWriter:
    """Streams images into a .fgd file that appears at `path` only when complete.

    Writes through fastgan.atomic.AtomicFile: a temporary file in the destination folder, fsynced,
    renamed over `path` by finish(), folder fsynced; abort() (or an exception inside a `with` block)
    removes the temporary file and leaves `path` as it was.
    """

    def __init__(self, path: str | os.PathLike, count: int, shape: tuple[int, int, int], has_labels: bool):
        channels, height, width = shape
        # Validate up front with the reader's own rules, so the writer cannot produce a file it rejects.
        parse_header_py(pack_header(count, channels, height, width, has_labels, 0),
                        HEADER_SIZE + count * channels * height * width + (8 * count if has_labels else 0))
        self.path = Path(path)
        self.count, self.shape, self.has_labels = count, (channels, height, width), has_labels
        self._written = 0
        self._crc = 0
        self._out = AtomicFile(self.path)
        self._file = self._out.file
        try:
            self._file.write(b"\0" * HEADER_SIZE)
        except BaseException:
            self._out.abort()
            raise

    def write(self, images: np.ndarray) -> None:
        """Append uint8 images shaped (k, C, H, W)."""
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise ValueError(f"{self.path}: expected uint8 images of shape (k, {', '.join(map(str, self.shape))}); "
                             f"got {images.dtype} {images.shape}")
        if self._written + len(images) > self.count:
            raise ValueError(f"{self.path}: more images than the {self.count} announced")
        self._crc = zlib.crc32(images, self._crc)
        self._write(images.data)
        self._written += len(images)

    def _write(self, data) -> None:
        try:
            self._file.write(data)
        except OSError as e:
            if e.filename is None:  # a failed write(2) names no file (disk full, quota): say which
                e.filename = os.fspath(self.path)
            raise

    def finish(self, labels: np.ndarray | None = None) -> Path:
        """Write the labels and the final header, then move the file into place."""
        if self._written != self.count:
            raise ValueError(f"{self.path}: wrote {self._written} images, announced {self.count}")
        if (labels is not None) != self.has_labels:
            raise ValueError(f"{self.path}: labels {'missing' if labels is None else 'not announced'}")
        if labels is not None:
            labels = np.ascontiguousarray(labels, dtype="<i8")
            if labels.shape != (self.count,):
                raise ValueError(f"{self.path}: labels must have shape ({self.count},); got {labels.shape}")
            self._crc = zlib.crc32(labels, self._crc)
            self._write(labels.data)
        self._file.seek(0)
        self._write(pack_header(self.count, *self.shape, self.has_labels, self._crc))
        return self._out.commit()  # removes the temporary file itself if it fails before the rename

    def abort(self) -> None:
        """Remove the temporary file; `path` is left as it was. Does nothing after finish()."""
        self._out.abort()

    def __enter__(self) -> FgdWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()  # a writer left without finish() is discarded


def write_fgd(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write uint8 (N, C, H, W) images and optional int64 labels as a .fgd file, atomically."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"write_fgd: images must be uint8 (N, C, H, W); got {images.dtype} {images.shape}")
    with FgdWriter(path, len(images), images.shape[1:], labels is not None) as writer:
        writer.write(images)
        return writer.finish(labels)
