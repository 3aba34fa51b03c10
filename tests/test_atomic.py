"""fastgan.atomic: a file appears complete or not at all, with ordinary permissions, and failures leave no trace."""
import errno
import os
import stat

import pytest

from fastgan import atomic
from fastgan.atomic import AtomicFile, atomic_write, atomic_write_bytes, fsync_dir

OLD, NEW = b"the old contents\n", b"the new contents, longer than the old ones\n"


class FailingOs:
    """Stands in for the os module inside fastgan.atomic: `name` raises `error` on call number `on_call`."""

    def __init__(self, name: str, error: BaseException, on_call: int = 1):
        self._name, self._error, self._on_call, self._calls = name, error, on_call, 0

    def __getattr__(self, attr):
        real = getattr(os, attr)
        if attr != self._name:
            return real

        def call(*args, **kwargs):
            self._calls += 1
            if self._calls == self._on_call:
                raise self._error
            return real(*args, **kwargs)

        return call


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "kept.bin"
    path.write_bytes(OLD)
    return path


def _listing(folder):
    return sorted(os.listdir(folder))


def _assert_untouched(target):
    assert target.read_bytes() == OLD
    assert _listing(target.parent) == [target.name], "a temporary file was left behind"


def test_the_new_file_appears_with_all_its_bytes(tmp_path):
    path = tmp_path / "out.bin"
    assert atomic_write_bytes(path, NEW) == path
    assert path.read_bytes() == NEW
    assert atomic_write(str(path), lambda f: f.write(memoryview(OLD))) == path
    assert path.read_bytes() == OLD
    assert _listing(tmp_path) == ["out.bin"]


def test_until_the_write_returns_the_target_holds_the_old_file(target):
    seen = []

    def write(f):
        f.write(NEW[:5])
        seen.append(target.read_bytes())  # a reader in the middle of the write
        f.write(NEW[5:])

    atomic_write(target, write)
    assert seen == [OLD] and target.read_bytes() == NEW


def test_the_temporary_file_is_hidden_in_the_targets_folder(target):
    names = []
    atomic_write(target, lambda f: names.extend(n for n in os.listdir(target.parent) if n != target.name))
    assert len(names) == 1
    assert names[0].startswith(f".{target.name}.") and names[0].endswith(".tmp")


def test_files_get_ordinary_permissions_0644_under_umask_022_not_0600(tmp_path):
    old_umask = os.umask(0o022)
    try:
        modes = []
        path = atomic_write(tmp_path / "new.bin", lambda f: modes.append(os.fstat(f.fileno()).st_mode))
        private = tmp_path / "private.bin"
        private.write_bytes(OLD)
        private.chmod(0o600)
        atomic_write_bytes(private, NEW)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(modes[0]) == 0o644, "the temporary file"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o644, "a replaced file gets the ordinary mode too"


def test_when_the_write_callback_raises_the_temp_is_removed_and_the_target_untouched(target):
    def write(f):
        f.write(NEW[:5])
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="the producer failed"):
        atomic_write(target, write)
    _assert_untouched(target)


def test_when_the_process_is_interrupted_mid_write_the_temp_is_removed_and_the_target_untouched(target):
    def write(f):
        f.write(NEW[:5])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    _assert_untouched(target)


def test_when_fsync_raises_the_temp_is_removed_and_the_target_untouched(target, monkeypatch):
    monkeypatch.setattr(atomic, "os", FailingOs("fsync", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, NEW)
    assert e.value.errno == errno.ENOSPC
    _assert_untouched(target)


def test_when_os_replace_raises_the_temp_is_removed_and_the_target_untouched(target, monkeypatch):
    monkeypatch.setattr(atomic, "os", FailingOs("replace", PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(PermissionError):
        atomic_write_bytes(target, NEW)
    _assert_untouched(target)


def test_when_the_temp_file_cannot_be_created_the_error_is_raised_and_the_target_untouched(target, monkeypatch):
    monkeypatch.setattr(atomic, "os", FailingOs("open", PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(PermissionError):
        atomic_write_bytes(target, NEW)
    _assert_untouched(target)


def test_a_folder_fsync_error_is_raised_with_the_new_file_in_place(target, monkeypatch):
    # fsync call 1 syncs the file, call 2 the folder after the rename.
    monkeypatch.setattr(atomic, "os", FailingOs("fsync", OSError(errno.EIO, os.strerror(errno.EIO)), on_call=2))
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, NEW)
    assert e.value.errno == errno.EIO
    assert target.read_bytes() == NEW and _listing(target.parent) == [target.name]


def test_fsync_dir_raises_instead_of_ignoring_a_folder_it_cannot_open(tmp_path):
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def test_fsync_dir_does_nothing_where_folders_cannot_be_opened(tmp_path, monkeypatch):
    class NotPosix:
        name = "nt"

        def __getattr__(self, attr):
            raise AssertionError(f"os.{attr} called on a platform that cannot open a folder")

    monkeypatch.setattr(atomic, "os", NotPosix())
    fsync_dir(tmp_path / "missing")


def test_a_name_clash_with_an_existing_temp_file_tries_another_name(target, monkeypatch):
    names = iter(["clash", "clash", "fresh"])

    class Secrets:
        @staticmethod
        def token_hex(nbytes):
            return next(names)

    clash = target.with_name(f".{target.name}.clash.tmp")
    clash.write_bytes(b"someone else's temporary file")
    monkeypatch.setattr(atomic, "secrets", Secrets)
    atomic_write_bytes(target, NEW)
    assert target.read_bytes() == NEW and clash.read_bytes() == b"someone else's temporary file"
    assert _listing(target.parent) == sorted([target.name, clash.name])


def test_missing_parent_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(path, NEW)
    assert path.read_bytes() == NEW


def test_atomic_file_commits_on_leaving_a_with_block_and_aborts_on_an_exception(target):
    with AtomicFile(target) as out:
        out.file.write(NEW)
        assert target.read_bytes() == OLD
    assert out.state == "committed" and target.read_bytes() == NEW
    target.write_bytes(OLD)
    with pytest.raises(ValueError, match="stop"):
        with AtomicFile(target) as out:
            out.file.write(NEW)
            raise ValueError("stop")
    assert out.state == "aborted"
    _assert_untouched(target)


def test_atomic_file_steps_sync_then_commit_and_refuse_to_run_twice(target):
    out = AtomicFile(target)
    out.file.write(NEW)
    temp = out.sync()
    assert temp == out.temp and temp.read_bytes() == NEW and target.read_bytes() == OLD
    assert out.commit() == target and target.read_bytes() == NEW and not temp.exists()
    out.abort()  # nothing to undo after a commit
    assert target.read_bytes() == NEW
    with pytest.raises(ValueError, match="is committed"):
        out.commit()


def test_an_aborted_atomic_file_leaves_nothing_and_cannot_be_committed(target):
    out = AtomicFile(target)
    out.file.write(NEW)
    out.abort()
    _assert_untouched(target)
    with pytest.raises(ValueError, match="is aborted"):
        out.commit()


# -- append-only files and temporary files left by crashes (issue 18) --------------------------------


def test_append_line_writes_whole_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    atomic.append_line(log, '{"step": 1}')
    atomic.append_line(log, '{"step": 2}\n')
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_a_failed_append_leaves_the_earlier_lines_exactly_as_they_were(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n')

    class DiskFullMidLine:
        def __getattr__(self, attr):
            return getattr(os, attr)

        @staticmethod
        def write(fd, data):
            os.write(fd, bytes(data[: len(data) // 2]))  # part of the line reaches the file, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "os", DiskFullMidLine())
    with pytest.raises(OSError) as e:
        atomic.append_line(log, '{"step": 2, "d_loss": 1.0}')
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(log)
    assert log.read_text() == '{"step": 1}\n'


def _stale(folder, name, age=3600.0):
    path = folder / f".{name}.0123abcd.tmp"
    path.write_bytes(b"left by a killed writer")
    os.utime(path, (os.path.getmtime(path) - age,) * 2)
    return path


def test_remove_stale_temps_removes_abandoned_temps_of_the_name_only(tmp_path):
    mine, other = _stale(tmp_path, "data.fgd"), _stale(tmp_path, "other.fgd")
    (tmp_path / "data.fgd").write_bytes(b"kept")
    assert atomic.remove_stale_temps(tmp_path, "data.fgd") == [mine]
    assert sorted(os.listdir(tmp_path)) == sorted(["data.fgd", other.name])
    assert atomic.remove_stale_temps(tmp_path) == [other]
    assert atomic.remove_stale_temps(tmp_path / "missing") == []


def test_remove_stale_temps_keeps_a_live_writers_temp_and_a_just_created_one(tmp_path):
    live = AtomicFile(tmp_path / "data.fgd")
    os.utime(live.temp, (os.path.getmtime(live.temp) - 3600,) * 2)  # old, but its writer holds the lock
    young = _stale(tmp_path, "data.fgd", age=0)
    try:
        assert atomic.remove_stale_temps(tmp_path, "data.fgd") == []
        live.file.write(NEW)
        live.sync()  # closed, not yet renamed: still locked
        assert atomic.remove_stale_temps(tmp_path, "data.fgd") == []
        live.commit()
    finally:
        live.abort()
    assert (tmp_path / "data.fgd").read_bytes() == NEW and young.exists()


# -- input and output checks (issue 27) ------------------------------------------------------------


def test_require_regular_file_refuses_fifos_and_names_missing_files(tmp_path):
    from fastgan.atomic import require_regular_file

    (tmp_path / "f").write_text("x")
    assert require_regular_file(tmp_path / "f", "dataset") == tmp_path / "f"
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"pipe: the dataset is a FIFO \(named pipe\), not a regular file"):
        require_regular_file(tmp_path / "pipe", "dataset")
    with pytest.raises(ValueError, match="is a folder"):
        require_regular_file(tmp_path, "dataset")
    assert require_regular_file(tmp_path, "input", folder_ok=True) == tmp_path
    with pytest.raises(FileNotFoundError, match="no such dataset") as e:
        require_regular_file(tmp_path / "missing", "dataset")
    assert e.value.filename == str(tmp_path / "missing")


def test_check_replaceable_allows_new_files_and_its_own_kind_and_never_the_input(tmp_path):
    from fastgan.atomic import check_replaceable

    def png(head):
        return head.startswith(b"\x89PNG")

    assert check_replaceable(tmp_path / "new.png", "a PNG", png) == tmp_path / "new.png"
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nrest")
    check_replaceable(tmp_path / "a.png", "a PNG", png)
    (tmp_path / "b.png").write_bytes(b"not one")
    with pytest.raises(ValueError, match="exists and is not a PNG, which is all this command replaces"):
        check_replaceable(tmp_path / "b.png", "a PNG", png)
    check_replaceable(tmp_path / "b.png", "a PNG", png, force=True)
    os.link(tmp_path / "a.png", tmp_path / "hard.png")
    with pytest.raises(ValueError, match="is also the input"):
        check_replaceable(tmp_path / "hard.png", "a PNG", png, inputs=[tmp_path / "a.png"], force=True)


def test_append_line_without_following_symlinks_leaves_the_target_alone(tmp_path):
    from fastgan.atomic import SymlinkError, append_line

    target = tmp_path / "elsewhere.txt"
    target.write_text("kept, torn")
    (tmp_path / "metrics.jsonl").symlink_to(target)
    with pytest.raises(SymlinkError, match="metrics.jsonl: is a symlink"):
        append_line(tmp_path / "metrics.jsonl", "{}", follow_symlinks=False)
    assert target.read_text() == "kept, torn"
