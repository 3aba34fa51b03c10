"""A run's directory, owned by one object: its lock, config.json, the metrics log, checkpoint rotation (healthy /
latest), sample grids, curves and TensorBoard events. The loop asks a RunFolder; it never opens a run file itself.

One owner at a time: whoever writes a run (`fastgan train`, `fastgan eval`) holds an exclusive flock on the
folder's lock file (.fastgan.lock) for as long as it writes; a second process is refused with one line naming the
owner (pid, host, start time, command). The kernel drops the lock when its owner dies, even by kill -9, so no
lock is ever stale; the file itself is removed when the owner is done and means nothing without the lock.
Unnamed runs take their numbered folder with an atomic mkdir, then lock it.

The folder's own files are opened without following symlinks: a symlink in their place is an error naming it.

Divergence (see Divergence) is judged from the run's own logged statistics; a checkpoint written while the run is
diverged (with on_divergence=continue) never rotates the last healthy one out: it is kept as
checkpoint.healthy.pt until a healthy checkpoint follows.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import socket
import warnings
from pathlib import Path

from ..atomic import SymlinkError, append_line, atomic_write_bytes, read_file, refuse_symlink, remove_stale_temps
from .checkpoint import (DAMAGED, LATEST, PREVIOUS, CheckpointFallbackWarning, check_writable, load_checkpoint,
                         save_checkpoint, save_space_needed)
from .curves import CURVES, draw_curves

try:
    import fcntl
except ImportError:  # Windows: no flock; a run folder is then not locked
    fcntl = None

METRICS = "metrics.jsonl"
CONFIG = "config.json"
TENSORBOARD = "tensorboard"
LOCK = ".fastgan.lock"
HEALTHY = "checkpoint.healthy.pt"  # the last healthy checkpoint, while later ones hold a diverged state
SAMPLES = "samples"
#: the names a run folder holds; none of them may be a symlink
OWN_NAMES = (LOCK, CONFIG, METRICS, LATEST, PREVIOUS, DAMAGED, HEALTHY, CURVES, TENSORBOARD, SAMPLES,
             f"{SAMPLES}.png", f"{SAMPLES}.txt")
#: free space the pre-flight asks for beyond the checkpoints: the log and the sample grids
OUTPUT_MARGIN_BYTES = 1 << 20

__all__ = ["DIVERGENCE_FACTOR", "Divergence", "RunBusyError", "RunFolder", "read_log"]


class RunBusyError(OSError):
    """Another live process owns the run folder (holds its lock)."""


# -- the metrics log -------------------------------------------------------------------------------


def _log_lines(path: Path, follow_symlinks: bool = True) -> list[tuple[str, dict]]:
    """(line, parsed row) for each line of a metrics.jsonl; see read_log."""
    lines = read_file(path, follow_symlinks).decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if number == len(lines):
                warnings.warn(f"{path}: dropped its last line, torn by an interrupted write (crash or full disk): "
                              f"{line[:60]!r}", stacklevel=3)
                break
            raise ValueError(f"{path}: line {number} is damaged ({e}); delete or mend that line") from None
        rows.append((line, row))
    return rows


def read_log(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl.

    A last line that is not complete JSON (a write torn by a crash or a full disk) is dropped with a warning
    naming the file; a damaged line before the last is a ValueError naming the file and the line.
    """
    return [row for _, row in _log_lines(Path(path))]


# -- divergence -------------------------------------------------------------------------------------

#: a logged loss or mean logit this many times its own scale outside the range it kept so far is divergence
DIVERGENCE_FACTOR = 100.0


def _watched(key: str) -> bool:
    """The logged numbers whose range is watched: losses and mean logits (not penalties, rewards, timings)."""
    return "loss" in key or key.endswith("_logit")


class Divergence:
    """Whether a run has diverged, judged from its own logged statistics.

    At each check (every log step, and before every checkpoint), with the training numbers of that step (averaged
    over processes), the run has diverged when:

    - a loss is larger in size than `absolute` (base.DIVERGED_LOSS, 1e6): no GAN, VAE or sequence loss of
      fastgan's families reaches it while training works, and it covers a run that diverges before it has a
      range of its own; or
    - a loss or a mean logit lies outside its own range over the run's healthy log rows so far, [lo, hi], by more
      than `factor` (DIVERGENCE_FACTOR, 100) times that quantity's scale, max(hi - lo, |lo|, |hi|, 1): a d_loss
      that stayed in [0.3, 1.4] diverges above 141.4, a logit in [-3, 3] beyond +-603.

    and, before each checkpoint, when a network's weights are NaN or infinite (RunFolder.save_checkpoint).
    A NaN or infinite loss is not judged here: its update was skipped, the weights are untouched, and
    config.max_nonfinite such updates in a row stop the run (BaseTrainer.apply_gradients).

    Only healthy log rows widen the ranges (checks at checkpoint steps that log nothing judge but do not learn),
    so the state is a function of metrics.jsonl and is rebuilt from it on resume (replay). Deterministic: it
    reads the logged values, rounded as the log holds them; it costs nothing beyond the log step's own reads.
    """

    def __init__(self, absolute: float, factor: float = DIVERGENCE_FACTOR):
        self.absolute, self.factor = absolute, factor
        self.ranges: dict[str, tuple[float, float]] = {}

    def verdict(self, values: dict[str, float]) -> str | None:
        """None when the values are healthy; otherwise why the run has diverged (one clause)."""
        for key, value in values.items():
            if not _watched(key) or not math.isfinite(value):
                continue
            if "loss" in key and abs(value) > self.absolute:
                return f"{key} {value:.4g} is above {self.absolute:g} in size"
            if key in self.ranges:
                lo, hi = self.ranges[key]
                scale = max(hi - lo, abs(lo), abs(hi), 1.0)
                if not lo - self.factor * scale <= value <= hi + self.factor * scale:
                    return (f"{key} {value:.4g} is far outside the range [{lo:.4g}, {hi:.4g}] it kept over the run: "
                            f"by more than {self.factor:g} times its scale {scale:.3g}")
        return None

    def learn(self, values: dict[str, float]) -> None:
        """Widen the ranges with a healthy log row."""
        for key, value in values.items():
            if _watched(key) and math.isfinite(value):
                lo, hi = self.ranges.get(key, (value, value))
                self.ranges[key] = (min(lo, value), max(hi, value))

    def check(self, values: dict[str, float], logged: bool) -> str | None:
        """verdict(values), and learn(values) when they are healthy and logged."""
        why = self.verdict(values)
        if why is None and logged:
            self.learn(values)
        return why

    def replay(self, rows: list[dict]) -> None:
        """Rebuild the ranges from the training rows of a run's log (a resumed run judges as the whole run)."""
        for row in rows:
            if "eval" in row:
                continue
            values = {k: float(v) for k, v in row.items() if k not in ("step", "img_per_s", "skipped_updates")
                      and isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.check(values, logged=True)


# -- the folder ------------------------------------------------------------------------------------


def _owner_text(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return (f"pid {owner['pid']} on {owner['host']}, {owner['command']} started {owner['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded itself yet)"


class RunFolder:
    """A run's directory. `claim` (or `lock`) makes this process its one owner; `release` lets it go."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # folders this process made, removed again if the run never opens
        self.opened = False
        self.healthy_step: int | None = None  # step of the last checkpoint saved healthy (None: none yet)
        self._latest_diverged = False

    # -- ownership ----------------------------------------------------------------------------------

    @classmethod
    def claim(cls, config) -> RunFolder:
        """The run folder config names (resume, --name) or the next free numbered one, created and locked.

        Errors name the problem: a resume with nothing to resume, a named folder that holds a run (pass --resume)
        or something else, a folder owned by a live process (RunBusyError, naming it).
        """
        out = Path(config.out_dir)
        command = "fastgan train" + (" --resume" if config.resume else "")
        if config.resume:
            if not config.name:
                raise ValueError("resume needs the run's name (--name)")
            folder = cls(out / config.name)
            if not folder.path.is_dir():
                raise FileNotFoundError(f"{folder.path}: no such run to resume (check --out-dir and --name)")
            folder.lock(command)
            if not folder.has_checkpoint():
                folder.release()
                raise FileNotFoundError(f"{folder.path}: nothing to resume: the run wrote no checkpoint (it stopped "
                                        f"before its first save); start it again without --resume")
            return folder
        if config.name:
            folder = cls(out / config.name)
            folder._check_free()
            folder._make(exist_ok=True)
            folder.lock(command)
            try:
                folder._check_free()  # again, as owner: another run may have written it meanwhile
            except BaseException:
                folder.release()
                raise
            return folder
        base = f"{Path(config.dataset).stem}-{config.model}"
        i = 0
        while True:
            folder = cls(out / (base if i == 0 else f"{base}-{i}"))
            i += 1
            try:
                folder._make(exist_ok=False)
            except FileExistsError:
                continue  # taken, by an earlier run or one starting at the same moment
            folder.lock(command)
            config.name = folder.path.name
            return folder

    def _check_free(self) -> None:
        """A named folder may be taken if it is new, empty, or holds a run that wrote no checkpoint."""
        run = self.path
        if not run.exists() and not run.is_symlink():
            return
        if not run.is_dir():
            raise FileExistsError(f"{run} exists and is not a fastgan run: choose another --name")
        if not any(entry.name != LOCK for entry in os.scandir(run)):
            return
        if self.has_checkpoint():
            raise FileExistsError(f"{run} exists: pass --resume to continue it, or another --name")
        if not (run / CONFIG).is_file():
            raise FileExistsError(f"{run} exists and is not a fastgan run: choose another --name")

    def _make(self, exist_ok: bool) -> None:
        """Create the folder (and missing parents), remembering what was made here."""
        missing = []
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise type(e)(e.errno, f"{parent}: folder (where {self.path} would be created) is not writable: "
                                   f"{e.strerror or e}") from None
        self._created = missing[::-1]
        try:
            self.path.mkdir()
            self._created.append(self.path)
        except FileExistsError:
            if not exist_ok:
                raise
        except OSError as e:
            self._remove_created()
            raise type(e)(e.errno, f"{self.path.parent}: folder (where {self.path} would be created) is not "
                                   f"writable: {e.strerror or e}") from None

    def lock(self, command: str) -> None:
        """Become the folder's one owner, or RunBusyError naming the owner. Also checks that none of the folder's
        own names is a symlink. A folder that cannot be written (read-only) is an error saying so."""
        self.check_no_symlinks()
        if fcntl is None:
            return
        path = self.path / LOCK
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                             0o666)
            except OSError as e:
                refuse_symlink(path, e)
                raise type(e)(e.errno, f"{self.path}: the run folder is not writable ({e.strerror or e}); "
                                       f"{command} writes there") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner_text(fd)
                os.close(fd)
                self._remove_created()
                raise RunBusyError(f"{self.path}: in use by {owner}; one process writes a run at a time: wait for "
                                   f"it to end, or choose another --name") from None
            except OSError:  # a filesystem without flock: the run goes on unlocked
                os.close(fd)
                warnings.warn(f"{self.path}: this filesystem cannot lock the run folder; make sure no other process "
                              f"writes the same run", stacklevel=3)
                return
            # The previous owner removes the file when it is done: a lock on a removed file guards nothing.
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        owner = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": command})
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        """Stop owning the folder; a run that never opened (it failed its checks) leaves no folder it made."""
        if self._lock_fd is not None:
            (self.path / LOCK).unlink(missing_ok=True)  # under the lock: see lock()
            os.close(self._lock_fd)
            self._lock_fd = None
        if not self.opened:
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: someone else's now
        self._created = []

    def check_no_symlinks(self) -> None:
        """SymlinkError naming the first of the folder's own names that is a symlink."""
        for name in OWN_NAMES:
            if (self.path / name).is_symlink():
                raise SymlinkError(f"{self.path / name}: is a symlink; fastgan does not follow symlinks in a run "
                                   f"folder: replace it with the file itself")

    # -- opening --------------------------------------------------------------------------------------

    def has_checkpoint(self) -> bool:
        return (self.path / LATEST).exists() or (self.path / PREVIOUS).exists()

    def load_for_resume(self, dist) -> dict:
        """The run's latest usable checkpoint. A damaged checkpoint.pt that was passed over is renamed to
        checkpoint.damaged.pt, so that the next save does not push the good checkpoint.prev.pt out for it."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CheckpointFallbackWarning)
            state = load_checkpoint(self.path)
        fell_back = False
        for w in caught:
            fell_back |= issubclass(w.category, CheckpointFallbackWarning)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        dist.barrier()  # every process has read the files before one is renamed
        if fell_back and dist.is_main and (self.path / LATEST).exists():
            os.replace(self.path / LATEST, self.path / DAMAGED)
        self._latest_diverged = bool(state.get("diverged"))
        self.healthy_step = None if self._latest_diverged else state["step"]
        return state

    def open(self, config_json: bytes, checkpoint_bytes: int, resume_step: int | None) -> None:
        """Process 0, once everything else has been checked: clear what crashed writers left, check that the saves
        will fit, write the config, and start the log (cut back to resume_step on resume)."""
        for folder in (self.path, self.path / SAMPLES):
            remove_stale_temps(folder)
        remove_stale_temps(self.path.parent, ".fastgan-write-test")
        check_writable(self.path, save_space_needed(self.path, checkpoint_bytes) + OUTPUT_MARGIN_BYTES)
        log = self.path / METRICS
        if resume_step is not None:
            if log.exists():
                kept = [line + "\n" for line, row in _log_lines(log, False) if row.get("step", 0) <= resume_step]
                atomic_write_bytes(log, "".join(kept).encode())
        else:
            log.unlink(missing_ok=True)  # left by a run that stopped before its first checkpoint
        atomic_write_bytes(self.path / CONFIG, config_json)
        self.opened = True

    def log_rows(self) -> list[dict]:
        """The rows of the run's metrics.jsonl (none if it has no log yet)."""
        log = self.path / METRICS
        if not log.exists() and not log.is_symlink():
            return []
        return [row for _, row in _log_lines(log, False)]

    # -- writing ------------------------------------------------------------------------------------

    def log(self, row: dict) -> None:
        append_line(self.path / METRICS, json.dumps(row), follow_symlinks=False)

    def check_log_writable(self) -> None:
        """OSError saying the log cannot be appended to (a read-only file), before any work is done. The folder
        itself was found writable when its lock file was made."""
        log = self.path / METRICS
        if not log.exists() and not log.is_symlink():
            return
        try:
            os.close(os.open(log, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)))
        except OSError as e:
            refuse_symlink(log, e)
            raise type(e)(e.errno, f"{log}: cannot be written ({e.strerror or e}): the run is read-only") from None

    def save_checkpoint(self, state: dict, healthy: bool) -> Path:
        """Save state as checkpoint.pt (the one it replaces becomes checkpoint.prev.pt). A diverged state is
        marked as such, and before the first one is saved the last healthy checkpoint is kept as
        checkpoint.healthy.pt, so rotation never pushes it out; the next healthy save removes that copy."""
        latest, healthy_copy = self.path / LATEST, self.path / HEALTHY
        if healthy:
            path = save_checkpoint(state, self.path)
            self.healthy_step, self._latest_diverged = state["step"], False
            healthy_copy.unlink(missing_ok=True)
            return path
        if not self._latest_diverged and latest.exists() and not healthy_copy.exists():
            temp = self.path / f".{HEALTHY}.link"
            temp.unlink(missing_ok=True)
            os.link(latest, temp)  # a second name for the same file: no copy, no space
            os.replace(temp, healthy_copy)
        path = save_checkpoint({**state, "diverged": True}, self.path)
        self._latest_diverged = True
        return path

    def healthy_checkpoint(self) -> Path:
        """Where the last healthy checkpoint is."""
        return self.path / (HEALTHY if (self.path / HEALTHY).exists() else LATEST)

    def write_samples(self, trainer) -> None:
        trainer.write_samples(self.path)

    def draw_curves(self) -> None:
        rows = self.log_rows()
        if rows:
            try:
                draw_curves({self.path.name: rows}, self.path / CURVES)
            except ValueError:  # nothing plottable logged yet
                pass

    def summary_writer(self, writer_class, resume_step: int | None):
        """TensorBoard's writer for the run's tensorboard/ folder; a resumed run drops the events logged after its
        checkpoint, as its metrics.jsonl does."""
        return writer_class(str(self.path / TENSORBOARD), purge_step=None if resume_step is None else resume_step + 1)

    def add_samples(self, board, trainer) -> None:
        """The sample grid just written, as an image of the run's TensorBoard events (image data only)."""
        if trainer.kind.board_images:
            import io

            import numpy as np
            from PIL import Image

            with Image.open(io.BytesIO(read_file(self.path / f"{SAMPLES}.png", follow_symlinks=False))) as grid:
                board.add_image("samples", np.asarray(grid.convert("RGB")), trainer.step, dataformats="HWC")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"
