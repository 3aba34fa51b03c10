"""Checkpoints that are written atomically, verified on load, and load without executing code.

File layout (version 2): a 56-byte header, then the torch.save archive of the state.

    magic  16 bytes  b"fastgan-ckpt-v2\\n"
    length  8 bytes  little-endian length of the archive that follows
    sha256 32 bytes  digest of the archive

The checksum sits in a header of the same file rather than in a sidecar file because one file is
replaced by one rename: a crash can never pair a new archive with an old checksum (or the reverse),
so a checksum mismatch always means damage, never a half-finished save. The cost is that plain
torch.load does not read the file directly; `torch.load(io.BytesIO(data[56:]), weights_only=True)`
does. Version 1 files (a bare torch.save archive with no checksum) still load.

save_checkpoint keeps the checkpoint it replaces as checkpoint.prev.pt, and load_checkpoint(run_dir)
falls back to it (with a warning) when checkpoint.pt is missing or damaged. A run folder's checkpoints are read
without following symlinks (a symlink there is an error naming it); a checkpoint file given by path may be one.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import struct
import warnings
from pathlib import Path

import torch

from fastgan.atomic import AtomicFile, read_file, require_regular_file
from fastgan.atomic import atomic_write_bytes  # noqa: F401  (still imported from here by train/)

FORMAT = "fastgan-checkpoint"
VERSION = 2
LEGACY_VERSION = 1  # bare torch.save archive, no checksum header
LATEST = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
DAMAGED = "checkpoint.damaged.pt"  # a checkpoint.pt that failed to load, kept for inspection

_MAGIC = b"fastgan-ckpt-v2\n"
_HEADER = struct.Struct("<16sQ32s")
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or not a fastgan checkpoint."""


class CheckpointWriteError(OSError):
    """save_checkpoint could not write the new checkpoint; the message says which earlier one is intact."""


class CheckpointFallbackWarning(UserWarning):
    """load_checkpoint(run_dir) used checkpoint.prev.pt because checkpoint.pt was missing or damaged."""


def _encode(state: dict) -> tuple[bytes, memoryview]:
    """(header, archive) of a state dict, as save_checkpoint writes them."""
    archive = io.BytesIO()
    torch.save({**state, "format": FORMAT, "version": VERSION}, archive)
    payload = archive.getbuffer()
    return _HEADER.pack(_MAGIC, payload.nbytes, hashlib.sha256(payload).digest()), payload


def checkpoint_nbytes(state: dict) -> int:
    """Size in bytes of the file save_checkpoint(state, ...) writes (serialises state in memory)."""
    header, payload = _encode(state)
    return len(header) + payload.nbytes


def save_checkpoint(state: dict, run_dir: Path) -> Path:
    """Write run_dir/checkpoint.pt atomically, keeping the one it replaces as checkpoint.prev.pt.

    The new file is written and fsynced under a temporary name before any existing file is touched,
    so a full disk or a permission error leaves checkpoint.pt and checkpoint.prev.pt as they were.
    Then checkpoint.pt becomes checkpoint.prev.pt and the new file becomes checkpoint.pt (two
    renames); a crash between the two leaves no checkpoint.pt, and load_checkpoint(run_dir) then
    uses checkpoint.prev.pt, which holds the checkpoint before this save.

    Raises CheckpointWriteError (an OSError, with the errno of the failure when there is one) naming
    the file and which earlier checkpoint is intact.
    """
    run_dir = Path(run_dir)
    latest, previous = run_dir / LATEST, run_dir / PREVIOUS
    header, payload = _encode(state)
    had_latest = latest.exists()
    new = None
    rotated = published = False
    def rotate():
        nonlocal rotated
        if had_latest:
            os.replace(latest, previous)
            rotated = True

    try:
        new = AtomicFile(latest)
        new.file.write(header)
        new.file.write(payload)
        new.sync()  # the new checkpoint is on disk under its temporary name before any rename
        try:
            new.commit(before_replace=rotate)
        finally:
            published = new.state == "committed"
    except BaseException as e:
        if new is not None and not published:
            new.abort()
        if not isinstance(e, Exception):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if published:
            message = (f"{latest}: checkpoint written, but syncing {run_dir} failed ({reason}); it may not survive "
                       "a power loss")
        elif rotated:
            message = (f"{latest}: checkpoint not saved ({reason}); the previous checkpoint is intact as {previous}, "
                       f"which load_checkpoint({str(run_dir)!r}) uses")
        elif had_latest:
            message = f"{latest}: checkpoint not saved ({reason}); the previous checkpoint {latest} is intact"
        else:
            message = f"{latest}: checkpoint not saved ({reason}); there is no earlier checkpoint in this run"
        code = e.errno if isinstance(e, OSError) else None
        raise (CheckpointWriteError(code, message) if code is not None else CheckpointWriteError(message)) from e
    return latest


def save_space_needed(run_dir: str | Path, nbytes: int) -> int:
    """Free bytes that the saves of checkpoints of nbytes bytes into run_dir need at their peak.

    save_checkpoint writes the new file while checkpoint.pt and checkpoint.prev.pt still exist, so a run
    takes room for three checkpoints (new, current, previous); the checkpoints already in run_dir count
    toward them.
    """
    run_dir = Path(run_dir)
    have = sum(p.stat().st_size for p in (run_dir / LATEST, run_dir / PREVIOUS) if p.is_file())
    return max(0, 3 * nbytes - have)


def check_writable(run_dir: str | Path, need_bytes: int) -> None:
    """Raise before training if run_dir cannot take need_bytes bytes of checkpoints.

    Creates and removes a temporary file in run_dir, or, when run_dir does not exist yet, in the nearest
    folder above it that does (where it would be created), then checks that the filesystem has at least
    need_bytes free (save_space_needed says how much a run's saves need). Raises PermissionError / OSError
    naming the folder, or OSError(ENOSPC) naming the folder, the free and the needed bytes.
    """
    run_dir = Path(run_dir)
    if need_bytes < 0:
        raise ValueError(f"check_writable: need_bytes must be >= 0; got {need_bytes}")
    folder = run_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder}: not a folder, so {run_dir} cannot be created in it")
    try:
        AtomicFile(folder / ".fastgan-write-test").abort()  # the temporary file save_checkpoint would make
    except OSError as e:
        where = "run directory" if folder == run_dir else f"folder (where {run_dir} would be created)"
        raise type(e)(e.errno, f"{folder}: {where} is not writable: {e.strerror or e}") from e
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise OSError(errno.ENOSPC, f"{run_dir}: not enough free space for checkpoints: {_size(free)} free, "
                                    f"{_size(need_bytes)} needed (room for three checkpoints: the new one, the "
                                    "current and the previous)")


def require_keys(state: dict, keys, path) -> None:
    """CheckpointError unless the checkpoint state has every key (a file with fastgan's marker can still lack some:
    damaged, or written by other code)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a complete fastgan training checkpoint: it has no "
                              f"{', '.join(map(repr, missing))}")


def require_finite_weights(state: dict, path, use: str) -> None:
    """CheckpointError naming the first network (and tensor) whose saved weights hold NaN or infinity: such a
    checkpoint samples, scores and trains to NaN, so `use` (sampling, evaluation, a resume) refuses it."""
    nets = dict(state.get("networks") or {})
    if isinstance(state.get("ema"), dict):
        nets["ema"] = state["ema"]
    for net, tensors in nets.items():
        for key, tensor in (tensors or {}).items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                raise CheckpointError(f"{path}: the checkpoint's {net} weights are not finite (NaN or infinity in "
                                      f"{key!r}), so {use} is refused; use an earlier checkpoint of the run")


def _size(n: int) -> str:
    scaled, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, bigger
    return f"{n:,} bytes" if unit == "bytes" else f"{n:,} bytes ({scaled:.1f} {unit})"


def _read_state(path: Path, map_location, follow_symlinks: bool = True) -> dict:
    """The state in one checkpoint file, verified; CheckpointError saying what is wrong otherwise. Without
    follow_symlinks (a run folder's checkpoints) a symlink is a SymlinkError naming it."""
    if not follow_symlinks and path.is_symlink():
        read_file(path, follow_symlinks=False)  # raises SymlinkError
    if not path.is_file():
        if path.exists():
            require_regular_file(path, "checkpoint")
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = read_file(path)
    stream = io.BytesIO(data)
    expected_version = LEGACY_VERSION
    if data.startswith(_MAGIC):
        if len(data) < _HEADER.size:
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated: {len(data)} bytes, shorter than "
                                  f"the {_HEADER.size}-byte header)")
        _, length, digest = _HEADER.unpack_from(data)
        have = len(data) - _HEADER.size
        if have != length:
            kind = "truncated" if have < length else "corrupt"
            raise CheckpointError(f"{path}: not a readable checkpoint ({kind}: the header says {length:,} bytes "
                                  f"follow it, the file has {have:,})")
        actual = hashlib.sha256(memoryview(data)[_HEADER.size:]).digest()
        if actual != digest:
            raise CheckpointError(f"{path}: not a readable checkpoint (checksum mismatch: sha256 "
                                  f"{actual.hex()[:16]}..., the header says {digest.hex()[:16]}...; the file "
                                  "was damaged after it was written)")
        stream.seek(_HEADER.size)  # torch.load reads the archive from the stream's position on
        expected_version = VERSION
    elif not data.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): it starts with neither "
                              "the fastgan checkpoint header nor a torch.save archive")
    try:
        state = torch.load(stream, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or corrupt zip archives
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastgan checkpoint (no '{FORMAT}' marker)")
    version = state.get("version")
    if version not in (LEGACY_VERSION, VERSION):
        raise CheckpointError(f"{path}: checkpoint version {version!r}; this fastgan reads versions "
                              f"{LEGACY_VERSION} and {VERSION}")
    if version != expected_version:
        raise CheckpointError(f"{path}: checkpoint version {version} in a file laid out as version "
                              f"{expected_version} (corrupt, or not written by fastgan)")
    return state


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with torch.load(weights_only=True), verify its checksum and format marker.

    A file path loads that file or raises CheckpointError. A run directory loads checkpoint.pt,
    or, if that is missing or damaged, checkpoint.prev.pt with a CheckpointFallbackWarning naming
    the bad file, the reason and the step used; CheckpointError names both files when neither loads.
    """
    path = Path(path)
    if not path.is_dir():
        return _read_state(path, map_location)
    latest, previous = path / LATEST, path / PREVIOUS
    try:
        return _read_state(latest, map_location, follow_symlinks=False)
    except CheckpointError as latest_error:
        try:
            state = _read_state(previous, map_location, follow_symlinks=False)
        except CheckpointError as previous_error:
            raise CheckpointError(f"{path}: no usable checkpoint: {latest_error}; {previous_error}") from None
        warnings.warn(f"{latest_error}; using the previous checkpoint {previous} (step {state.get('step', '?')})",
                      CheckpointFallbackWarning, stacklevel=2)
        return state
