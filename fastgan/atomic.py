"""Atomic file writes: the one helper that writes every file a user keeps.

Checkpoints, .fgd datasets, metric caches and benchmark results all go through here, with one
guarantee: the file at `path` is either the old one (or absent) or the complete new one, never a
partial file, and once a write returns, the new file survives a crash or a power loss.

How: a temporary file is created in the same folder as `path` (so the rename stays on one
filesystem), written, flushed and fsynced, then renamed over `path` with os.replace, and finally
the folder is fsynced (POSIX persists a rename only once the directory entry is on disk).

- The temporary file is `.<name>.<random>.tmp` beside the target, created with O_EXCL (a new
  random name is tried if one exists) and mode 0o666 filtered by the umask, like any file a program
  creates (0o644 under the usual umask 0o022); unlike tempfile.mkstemp, which makes it 0o600.
  A replaced file does not keep its old permissions.
- Any failure before the rename (including KeyboardInterrupt) removes the temporary file and leaves
  the target untouched; the error is raised, never swallowed.
- A failure to fsync the folder after the rename is raised too: the new file is then in place but
  may not survive a power loss. On platforms that cannot open a folder (os.name != "posix", i.e.
  Windows) the folder is not synced: there the rename is made durable by the filesystem's own
  journal, and no call exists to ask for it.
- Missing parent folders are created (like `mkdir -p`); only the target's own folder is fsynced.

Standard library only: every layer of fastgan may import this module.
"""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["AtomicFile", "atomic_write", "atomic_write_bytes", "fsync_dir"]

_TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_TEMP_ATTEMPTS = 100
_NAME_KEPT = 64  # characters of the target's name kept in the temporary name (NAME_MAX is 255 bytes)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the renames and new entries in folder durable; errors are raised.

    Does nothing where a folder cannot be opened (os.name != "posix"); see the module docstring.
    """
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty, hidden file beside path, opened for writing: (file descriptor, its path)."""
    for _ in range(_TEMP_ATTEMPTS):
        temp = path.with_name(f".{path.name[:_NAME_KEPT]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, _TEMP_FLAGS, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"{path.parent}: no unused temporary name for {path.name} "
                                        f"after {_TEMP_ATTEMPTS} tries")


class AtomicFile:
    """A new file for `path`, written under a temporary name, that appears at `path` only on commit().

    Write into `.file` (a binary file object), then call commit(); abort() (or any exception inside a
    `with` block) removes the temporary file and leaves `path` untouched. Leaving a `with` block
    normally commits. Steps, for callers that need to do their own renames (save_checkpoint):
    sync() flushes, fsyncs and closes the temporary file `.temp`; commit() is sync(), os.replace
    onto `path`, then fsync_dir of the folder. Each step that fails removes the temporary file
    (unless it has already been renamed) and raises.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        os.makedirs(self.path.parent, exist_ok=True)
        fd, self.temp = _create_temp(self.path)
        try:
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.temp.unlink(missing_ok=True)
            raise
        self._state = "open"  # open -> synced -> committed, or -> aborted from open or synced

    @property
    def state(self) -> str:
        """'open', 'synced', 'committed' or 'aborted'."""
        return self._state

    def sync(self) -> Path:
        """Flush and fsync the written data and close the file; returns the temporary file's path."""
        self._expect("open", "sync")
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        except BaseException:
            self.abort()
            raise
        self._state = "synced"
        return self.temp

    def commit(self) -> Path:
        """sync() if not done yet, rename the temporary file over path, fsync the folder; returns path.

        If the folder sync fails the error is raised, and the new file is already at path.
        """
        if self._state == "open":
            self.sync()
        self._expect("synced", "commit")
        try:
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Close and remove the temporary file; path is left as it was. Does nothing after commit or abort."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        try:
            self.file.close()  # closes the descriptor even when flushing the buffer fails
        except OSError:
            pass  # the buffered data is being thrown away: failing to write it changes nothing
        finally:
            self.temp.unlink(missing_ok=True)

    def _expect(self, state: str, step: str) -> None:
        if self._state != state:
            raise ValueError(f"{self.path}: AtomicFile.{step}() on a file that is {self._state}")

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state in ("open", "synced"):
            self.commit()

    def __repr__(self) -> str:
        return f"AtomicFile({str(self.path)!r}, {self._state})"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call write(file) on a new binary file, then put it at path atomically; returns path as a Path.

    Readers see the old file or the complete new one, never a half-written one, even when two
    processes write the same path at once (the last rename wins).
    """
    with AtomicFile(path) as out:
        write(out.file)
    return out.path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write data to path atomically; returns path as a Path."""
    return atomic_write(path, lambda f: f.write(data))
