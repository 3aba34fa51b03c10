"""Checkpoint files: checksummed, rotated safely, verified on load, with a fallback to the previous one."""
import errno
import io
import os
import shutil
import warnings
from collections import namedtuple

import pytest
import torch
from state_compare import assert_same
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgan import atomic
from fastgan.train import checkpoint
from fastgan.train.checkpoint import (
    FORMAT,
    LATEST,
    PREVIOUS,
    CheckpointError,
    CheckpointFallbackWarning,
    CheckpointWriteError,
    check_writable,
    checkpoint_nbytes,
    load_checkpoint,
    save_checkpoint,
    save_space_needed,
)

HEADER_BYTES = 56


def state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"step": step, "weights": {"w": torch.randn(4, 3, generator=g), "n": torch.tensor(step)},
            "rng": g.get_state(), "config": {"lr": 2e-4, "name": f"run{step}"}}


@pytest.fixture
def run(tmp_path):
    """A run directory with checkpoint.pt at step 2 and checkpoint.prev.pt at step 1."""
    save_checkpoint(state(1), tmp_path)
    save_checkpoint(state(2), tmp_path)
    return tmp_path


def loaded_step(path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback allowed here
        return load_checkpoint(path)["step"]


def test_round_trip_keeps_every_value_and_marks_the_format(tmp_path):
    path = save_checkpoint(state(5), tmp_path)
    assert path == tmp_path / LATEST
    loaded = load_checkpoint(path)
    assert (loaded.pop("format"), loaded.pop("version")) == (FORMAT, 2)
    assert_same(loaded, state(5))
    assert path.read_bytes().startswith(b"fastgan-ckpt-v2\n")
    assert sorted(os.listdir(tmp_path)) == [LATEST]


def test_the_payload_after_the_header_is_a_plain_torch_archive(run):
    data = (run / LATEST).read_bytes()
    payload = torch.load(io.BytesIO(data[HEADER_BYTES:]), weights_only=True)
    assert payload["step"] == 2 and payload["format"] == FORMAT


def test_saving_keeps_the_replaced_checkpoint_as_previous(run):
    assert loaded_step(run / LATEST) == 2 and loaded_step(run / PREVIOUS) == 1
    save_checkpoint(state(3), run)
    assert loaded_step(run / LATEST) == 3 and loaded_step(run / PREVIOUS) == 2
    assert sorted(os.listdir(run)) == [PREVIOUS, LATEST]


def test_checkpoint_nbytes_is_the_size_of_the_file(tmp_path):
    assert checkpoint_nbytes(state(7)) == save_checkpoint(state(7), tmp_path).stat().st_size


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(bytes of a saved checkpoint, a path to write variants of it to)."""
    folder = tmp_path_factory.mktemp("saved")
    return save_checkpoint(state(1), folder).read_bytes(), folder / "variant.pt"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_damaged_in_place_is_detected(saved, data):
    original, path = saved
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    damaged = bytearray(original)
    damaged[position] ^= data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="variant.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_damage_inside_the_archive_is_reported_as_a_checksum_mismatch(run):
    path = run / LATEST
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match="checksum mismatch.*damaged after it was written"):
        load_checkpoint(path)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_checkpoint_cut_at_any_length_is_detected(saved, data):
    original, path = saved
    path.write_bytes(original[: data.draw(st.integers(0, len(original) - 1), label="length")])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_version_1_checkpoints_without_a_checksum_still_load(tmp_path):
    torch.save({"format": FORMAT, "version": 1, **state(4)}, tmp_path / LATEST)
    for where in (tmp_path, tmp_path / LATEST):
        loaded = load_checkpoint(where)
        assert loaded.pop("version") == 1 and loaded.pop("format") == FORMAT
        assert_same(loaded, state(4))


def _with_header(payload: bytes) -> bytes:
    import hashlib
    import struct

    return struct.pack("<16sQ32s", b"fastgan-ckpt-v2\n", len(payload), hashlib.sha256(payload).digest()) + payload


def _archive(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("content, message", [
    (_archive({"format": FORMAT, "version": 2, "step": 1}), "version 2 in a file laid out as version 1"),
    (_with_header(_archive({"format": FORMAT, "version": 1, "step": 1})), "version 1 in a file laid out as version 2"),
    (_with_header(_archive({"format": FORMAT, "version": 3, "step": 1})),
     "version 3; this fastgan reads versions 1 and 2"),
    (_with_header(_archive({"weights": torch.zeros(2)})), "not a fastgan checkpoint"),
    (_archive({"weights": torch.zeros(2)}), "not a fastgan checkpoint"),
    (b"", "starts with neither the fastgan checkpoint header nor a torch.save archive"),
    (b"fastgan-ckpt-v2\n" + bytes(10), "truncated: 26 bytes, shorter than the 56-byte header"),
    (_with_header(b"abc") + b"x", "corrupt: the header says 3 bytes follow it, the file has 4"),
])
def test_files_that_are_not_valid_checkpoints_are_named_with_the_reason(tmp_path, content, message):
    path = tmp_path / "other.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def _damage(path, how):
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif how == "flipped byte":
        data = bytearray(path.read_bytes())
        data[-200] ^= 1
        path.write_bytes(data)
    else:
        path.write_bytes(b"not a checkpoint at all")


Damage = namedtuple("Damage", "how reason")
DAMAGES = [Damage("missing", "no such checkpoint file"), Damage("truncated", "truncated"),
           Damage("flipped byte", "checksum mismatch"), Damage("garbage", "starts with neither")]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.how)
def test_a_run_directory_falls_back_to_the_previous_checkpoint_with_a_warning(run, damage):
    _damage(run / LATEST, damage.how)
    with pytest.warns(CheckpointFallbackWarning) as caught:
        loaded = load_checkpoint(run)
    assert loaded["step"] == 1
    (warning,) = caught
    text = str(warning.message)
    assert text.startswith(f"{run / LATEST}: ")
    assert damage.reason in text
    assert text.endswith(f"using the previous checkpoint {run / PREVIOUS} (step 1)")


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.how)
def test_a_file_path_never_falls_back(run, damage):
    _damage(run / LATEST, damage.how)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=damage.reason):
            load_checkpoint(run / LATEST)


def test_when_both_checkpoints_are_bad_the_error_names_both(run):
    _damage(run / LATEST, "flipped byte")
    _damage(run / PREVIOUS, "truncated")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(run)
    message = str(e.value)
    assert message.startswith(f"{run}: no usable checkpoint: {run / LATEST}: ")
    assert "checksum mismatch" in message and f"{run / PREVIOUS}: not a readable checkpoint (truncated" in message


def test_an_empty_run_directory_names_both_missing_files(tmp_path):
    missing_both = f"{LATEST}: no such checkpoint file; .*{PREVIOUS}: no such checkpoint file"
    with pytest.raises(CheckpointError, match=missing_both):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------- failures and crashes while saving

class FailingCall:
    """Stands in for the os module inside fastgan.atomic (which creates, writes and syncs the files) or
    fastgan.train.checkpoint (which renames them); its `name` function raises `error` on call number
    `on_call` and delegates every other call and attribute to the real module."""

    def __init__(self, module, name: str, on_call: int, error: BaseException):
        self._module, self._name, self._on_call, self._error, self._calls = module, name, on_call, error, 0

    def __getattr__(self, attr):
        real = getattr(self._module, attr)
        if attr != self._name:
            return real

        def call(*args, **kwargs):
            self._calls += 1
            if self._calls == self._on_call:
                raise self._error
            return real(*args, **kwargs)

        return call


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EACCES = PermissionError(errno.EACCES, os.strerror(errno.EACCES))

# (module whose os fails, os function, call number that fails, error, step load_checkpoint(run) then gives,
# fallback?). In fastgan.atomic, os.open call 1 creates the temporary file and os.fsync call 1 syncs it;
# checkpoint's os.replace moves checkpoint.pt to prev, then fastgan.atomic's (call 1) moves the new file in.
Crash = namedtuple("Crash", "where name on_call error step fallback")
CRASHES = {
    "temp file not creatable": Crash(atomic, "open", 1, EACCES, 2, False),
    "disk full while syncing the new file": Crash(atomic, "fsync", 1, ENOSPC, 2, False),
    "rename of checkpoint.pt to prev fails": Crash(checkpoint, "replace", 1, EACCES, 2, False),
    "crash between the two renames": Crash(atomic, "replace", 1, ENOSPC, 2, True),
}


@pytest.mark.parametrize("crash", CRASHES.values(), ids=CRASHES.keys())
def test_a_failed_save_keeps_a_loadable_checkpoint_and_says_which(run, monkeypatch, crash):
    monkeypatch.setattr(crash.where, "os", FailingCall(os, crash.name, crash.on_call, crash.error))
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint(state(3), run)
    monkeypatch.undo()
    assert isinstance(e.value, OSError) and e.value.errno == crash.error.errno
    message = str(e.value)
    assert message.startswith(f"[Errno {crash.error.errno}] {run / LATEST}: "
                              f"checkpoint not saved ({crash.error.strerror})")
    if crash.fallback:
        assert message.endswith(f"the previous checkpoint is intact as {run / PREVIOUS}, which "
                                f"load_checkpoint({str(run)!r}) uses")
        with pytest.warns(CheckpointFallbackWarning, match="no such checkpoint file"):
            assert load_checkpoint(run)["step"] == crash.step
    else:
        assert message.endswith(f"the previous checkpoint {run / LATEST} is intact")
        assert loaded_step(run) == crash.step and loaded_step(run / PREVIOUS) == 1
    assert not [name for name in os.listdir(run) if name.endswith(".tmp")]
    # The next save works from whatever was left.
    save_checkpoint(state(4), run)
    assert loaded_step(run) == 4 and loaded_step(run / PREVIOUS) == 2


def test_a_failing_directory_sync_after_the_renames_says_the_file_was_written(run, monkeypatch):
    # fsync call 1 syncs the new file, call 2 the folder after the renames.
    monkeypatch.setattr(atomic, "os", FailingCall(os, "fsync", 2, OSError(errno.EIO, os.strerror(errno.EIO))))
    with pytest.raises(CheckpointWriteError, match=f"{LATEST}: checkpoint written, but syncing .* failed"):
        save_checkpoint(state(3), run)
    monkeypatch.undo()
    assert loaded_step(run) == 3 and loaded_step(run / PREVIOUS) == 2


def test_a_failed_first_save_says_there_is_no_earlier_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "os", FailingCall(os, "fsync", 1, ENOSPC))
    with pytest.raises(CheckpointWriteError, match="no earlier checkpoint in this run") as e:
        save_checkpoint(state(1), tmp_path)
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_any_error_of_the_write_is_reported_as_a_write_error(run, monkeypatch):
    monkeypatch.setattr(atomic, "os", FailingCall(os, "fsync", 1, RuntimeError("device vanished")))
    with pytest.raises(CheckpointWriteError, match=r"checkpoint not saved \(device vanished\); the previous") as e:
        save_checkpoint(state(3), run)
    assert e.value.errno is None and isinstance(e.value.__cause__, RuntimeError)


def test_a_temporary_file_left_by_a_crash_is_ignored(run):
    (run / f".{LATEST}.leftover.tmp").write_bytes(b"half a checkpoint")
    assert loaded_step(run) == 2
    save_checkpoint(state(3), run)
    assert loaded_step(run) == 3 and loaded_step(run / PREVIOUS) == 2


# ------------------------------------------------------------------- check_writable

def test_check_writable_accepts_a_writable_folder_with_room(tmp_path):
    check_writable(tmp_path, 1 << 20)
    assert os.listdir(tmp_path) == []


def test_check_writable_names_folder_free_and_needed_bytes_when_space_is_short(tmp_path, monkeypatch):
    with pytest.raises(OSError, match=f"{tmp_path}: not enough free space for checkpoints: [0-9,]+ bytes.* free, "
                                      r"1,000,000,000,000,000,000 bytes \(888.2 PiB\) needed") as e:
        check_writable(tmp_path, 10**18)
    assert e.value.errno == errno.ENOSPC
    usage = shutil.disk_usage(tmp_path)._replace(free=3 * 2**20)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(OSError, match=r": 3,145,728 bytes \(3.0 MiB\) free, 5,000,000 bytes \(4.8 MiB\) needed"):
        check_writable(tmp_path, 5_000_000)


def test_check_writable_refuses_a_read_only_folder(tmp_path, monkeypatch):
    # Simulated: the tests may run as root, which chmod does not stop.
    monkeypatch.setattr(atomic, "os", FailingCall(os, "open", 1, EACCES))
    with pytest.raises(PermissionError, match=f"{tmp_path}: run directory is not writable: Permission denied"):
        check_writable(tmp_path, 0)


def test_check_writable_checks_where_a_missing_run_directory_would_be_created_and_creates_nothing(tmp_path):
    check_writable(tmp_path / "runs" / "new", 0)
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        check_writable(tmp_path / "file" / "new", 0)
    with pytest.raises(ValueError, match="need_bytes must be >= 0; got -1"):
        check_writable(tmp_path, -1)


def test_save_space_needed_is_three_checkpoints_less_the_two_already_there(tmp_path):
    assert save_space_needed(tmp_path, 1000) == 3000
    save_checkpoint(state(1), tmp_path)
    size = (tmp_path / LATEST).stat().st_size
    assert save_space_needed(tmp_path, size) == 2 * size
    save_checkpoint(state(2), tmp_path)
    assert save_space_needed(tmp_path, size) == size
