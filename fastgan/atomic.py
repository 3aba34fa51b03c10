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
- While a writer lives, it holds an exclusive flock on its temporary file (where fcntl exists), so
  that remove_stale_temps can tell the temporary file of a live writer from one that a killed
  process left behind: the kernel drops the lock when the process dies, even by kill -9.

Append-only files (metrics.jsonl) are not replaced but appended to, one whole line per write(2) with
O_APPEND (append_line): a crash can tear only the line being written, never an earlier one, and the
next append cuts a torn last line away first.

Inputs and outputs are checked here too, before any work starts: require_regular_file refuses a FIFO, device
or socket (reading one would hang or never end) and check_replaceable refuses to write over a command's own
input or over a file of a kind the command does not make (without force). Files of a run folder are opened
with follow_symlinks=False (read_file, append_line): a symlink there is an error naming it, never a way to
write outside the folder.

Standard library only: every layer of fastgan may import this module.
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # Windows: no flock; remove_stale_temps then goes by age alone
    fcntl = None

__all__ = ["AtomicFile", "SymlinkError", "append_line", "atomic_write", "atomic_write_bytes", "check_replaceable",
           "fsync_dir", "read_file", "refuse_symlink", "remove_stale_temps", "require_regular_file"]

_TEMP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_TEMP_ATTEMPTS = 100
_NAME_KEPT = 64  # characters of the target's name kept in the temporary name (NAME_MAX is 255 bytes)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")
#: an unlocked temporary file younger than this may belong to a writer that has created it and not yet
#: taken its lock (microseconds in practice), so remove_stale_temps leaves it
FRESH_TEMP_S = 2.0
#: where locks cannot be taken (no fcntl, or a filesystem without flock), only temporary files untouched for
#: this long are taken for abandoned
UNLOCKED_STALE_S = 3600.0


class SymlinkError(OSError):
    """A file that fastgan opens without following symlinks (a run folder's) is a symlink."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is ("a FIFO (named pipe)", ...); None for a regular file."""
    for test, kind in _SPECIAL:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def require_regular_file(path: str | os.PathLike, what: str, folder_ok: bool = False) -> Path:
    """path as a Path if it is a regular file (or, with folder_ok, a folder); otherwise a one-line error naming
    it: FileNotFoundError when it does not exist, ValueError for a FIFO, device or socket, which fastgan never
    opens (reading one blocks, or never ends). `what` says what the file is for ("--config file", "dataset").

    The check is a stat, which opens nothing; a symlink is followed (a user's own input may be one).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no such {what}", os.fspath(path)) from None
    kind = _kind_of(mode)
    if kind is None or (folder_ok and stat.S_ISDIR(mode)):
        return path
    raise ValueError(f"{path}: the {what} is {kind}, not a regular file; fastgan reads only regular files"
                     f"{' and folders' if folder_ok else ''} there")


def refuse_symlink(path: str | os.PathLike, error: OSError) -> None:
    """Raise SymlinkError naming path if an open with O_NOFOLLOW failed (`error`) because path is a symlink."""
    if error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
        raise SymlinkError(errno.ELOOP, f"{os.fspath(path)}: is a symlink; fastgan does not follow symlinks in a "
                                        f"run folder: replace it with the file itself") from None


def read_file(path: str | os.PathLike, follow_symlinks: bool = True) -> bytes:
    """The bytes of the file at path; with follow_symlinks=False a symlink is a SymlinkError naming it, and a
    FIFO, device or socket a ValueError (the file is opened without blocking and checked before reading)."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    if not follow_symlinks:
        flags |= _NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if not follow_symlinks:
            refuse_symlink(path, e)
        raise
    with os.fdopen(fd, "rb") as f:
        kind = _kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise ValueError(f"{os.fspath(path)}: is {kind}, not a regular file")
        return f.read()


def check_replaceable(path: str | os.PathLike, what: str, is_kind, inputs=(), force: bool = False) -> Path:
    """Check, before any work starts, that a command may write its output at path; returns path as a Path.

    - path must not be one of `inputs` (the same file, by device and inode, or the same path): a command never
      writes over what it reads, not even with force;
    - an existing path must be a regular file for which is_kind(first 64 bytes) is true: a file of the kind the
      command makes (`what`, e.g. "a PNG image"), which it may replace; anything else (another kind of file, a
      symlink) needs force=True. A folder, FIFO, device or socket is refused even with force.
    """
    path = Path(path)
    for source in inputs:
        source = Path(source)
        same = os.path.abspath(source) == os.path.abspath(path)
        try:
            same = same or os.path.samefile(source, path)
        except OSError:
            pass  # one of them does not exist
        if same:
            raise ValueError(f"{path}: is also the input {source}; write the output to another file")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(mode):
        if force:
            return path  # the rename replaces the link itself, never the file it points to
        raise ValueError(f"{path}: exists and is a symlink; pass --force to replace the link (not the file it "
                         f"points to), or choose another output")
    kind = _kind_of(mode)
    if kind is not None:
        raise ValueError(f"{path}: exists and is {kind}; choose another output")
    if force:
        return path
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | _NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        head = f.read(64)
    if not is_kind(head):
        raise ValueError(f"{path}: exists and is not {what}, which is all this command replaces; pass --force to "
                         f"replace it anyway, or choose another output")
    return path


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


def _hold_lock(fd: int) -> int | None:
    """A duplicate of fd holding an exclusive flock on the file: the lock lives until the duplicate is closed,
    after the writer has closed its own descriptor (AtomicFile.sync) and renamed the file. None where locks
    are not available."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while remove_stale_temps looks at this young file
    except OSError:
        return None  # a filesystem without flock: remove_stale_temps goes by age there
    return os.dup(fd)


class AtomicFile:
    """A new file for `path`, written under a temporary name, that appears at `path` only on commit().

    Write into `.file` (a binary file object), then call commit(); abort() (or any exception inside a
    `with` block) removes the temporary file and leaves `path` untouched. Leaving a `with` block
    normally commits. Steps, for callers that need to do their own renames (save_checkpoint):
    sync() flushes, fsyncs and closes the temporary file `.temp`; commit() is sync(), the caller's
    before_replace(), os.replace onto `path`, then fsync_dir of the folder. Each step that fails removes the temporary file
    (unless it has already been renamed) and raises.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        os.makedirs(self.path.parent, exist_ok=True)
        fd, self.temp = _create_temp(self.path)
        self._lock: int | None = None
        try:
            self._lock = _hold_lock(fd)
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.temp.unlink(missing_ok=True)
            self._release()
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
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError) and e.filename is None:
                e.filename = os.fspath(self.path)  # a full disk shows here when buffered data is flushed
            raise
        self._state = "synced"
        return self.temp

    def commit(self, before_replace: Callable[[], object] | None = None) -> Path:
        """sync() if not done yet, call before_replace() (save_checkpoint rotates the old files there), rename
        the temporary file over path, fsync the folder; returns path.

        If before_replace or the rename fails, the temporary file is removed and the error raised. If the
        folder sync fails the error is raised, and the new file is already at path (state 'committed').
        """
        if self._state == "open":
            self.sync()
        self._expect("synced", "commit")
        try:
            if before_replace is not None:
                before_replace()
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._state = "committed"
        self._release()
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
            self._release()

    def _release(self) -> None:
        """Drop the lock that marks the temporary file as being written."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

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
        try:
            write(out.file)
        except OSError as e:
            if e.filename is None:  # a failed write(2) names no file; say which one (disk full, quota)
                e.filename = os.fspath(path)
            raise
    return out.path


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write data to path atomically; returns path as a Path."""
    return atomic_write(path, lambda f: f.write(data))


def append_line(path: str | os.PathLike, line: str, sync: bool = True, follow_symlinks: bool = True) -> None:
    """Append `line` and a newline to the log file at path (created if missing), in one write(2) with O_APPEND.

    A crash can then tear only this line, never an earlier one. A failed write (disk full) is undone by
    cutting the file back to its old length before the error is raised. A file that does not end in a
    newline holds a line torn by an earlier crash: it is cut back to its last complete line, with a
    warning, so the new line does not run into it. sync: fsync after writing. follow_symlinks=False: a symlink
    at path is a SymlinkError naming it (a run folder's log), and anything but a regular file a ValueError.
    """
    data = memoryview((line.rstrip("\n") + "\n").encode())
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if not follow_symlinks:
            refuse_symlink(path, e)
        raise
    size = None
    try:
        info = os.fstat(fd)
        if _kind_of(info.st_mode) is not None:
            raise ValueError(f"{os.fspath(path)}: is {_kind_of(info.st_mode)}, not a log file")
        size = info.st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            kept = _complete_lines_length(fd, size)
            os.ftruncate(fd, kept)
            warnings.warn(f"{os.fspath(path)}: dropped a torn last line ({size - kept} bytes, left by an interrupted "
                          "write)", stacklevel=2)
            size = kept
        while data:
            data = data[os.write(fd, data):]
        if sync:
            os.fsync(fd)
    except OSError as e:
        if size is not None:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the error below is what the caller needs; the reader drops a torn last line anyway
        if e.filename is None:
            e.filename = os.fspath(path)
        raise
    finally:
        os.close(fd)


def _complete_lines_length(fd: int, size: int) -> int:
    """The length of the file up to and including its last newline (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files (`.NAME.<random>.tmp`) that writers killed mid-write left in folder.

    name: only the temporary files of that target (None: of every target). Returns the removed paths.

    A temporary file is removed only when no live writer holds it: every AtomicFile holds an exclusive
    flock on its temporary file until it is renamed or removed, and the kernel drops the lock when the
    process dies, so a file nobody locks is abandoned; one younger than FRESH_TEMP_S seconds is left, as
    its writer may be between creating it and locking it. Where flock is not available (Windows, some
    network filesystems) only files untouched for UNLOCKED_STALE_S seconds (an hour) are removed.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed, now = [], time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or (name is not None and match["name"] != name[:_NAME_KEPT]):
            continue
        if _remove_if_abandoned(entry.path, now):
            removed.append(Path(entry.path))
    return removed


def _remove_if_abandoned(path: str, now: float) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False  # gone already (renamed or removed by its writer), or not ours to read
    try:
        age = now - os.fstat(fd).st_mtime
        if fcntl is None:
            abandoned = age >= UNLOCKED_STALE_S
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                abandoned = age >= FRESH_TEMP_S
            except BlockingIOError:
                abandoned = False  # a live writer holds it
            except OSError:
                abandoned = age >= UNLOCKED_STALE_S
        if abandoned:
            os.unlink(path)  # while holding the lock: no writer can take the file over meanwhile
        return abandoned
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)
