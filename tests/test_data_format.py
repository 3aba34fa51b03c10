"""The .fgd format: byte layout, round trips, and rejection of every kind of bad file."""
import os
import stat
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgan.data import PackedDataset
from fastgan.data.format import (HEADER_SIZE, MAGIC, FgdWriter, Header, pack_header, parse_header_py,
                                 read_header, write_fgd)

try:
    from fastgan import _loader as native
except ImportError:
    native = None

needs_native = pytest.mark.skipif(native is None, reason="fastgan._loader is not built")


def _images(n=5, c=3, h=4, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


@pytest.fixture
def small_fgd(tmp_path):
    images, labels = _images(), np.array([3, -1, 2**40, 0, 7], dtype=np.int64)
    return write_fgd(tmp_path / "small.fgd", images, labels), images, labels


def test_header_fields_sit_at_the_documented_offsets(small_fgd):
    path, images, labels = small_fgd
    raw = path.read_bytes()
    assert raw[0:8] == MAGIC
    assert struct.unpack_from("<IIQIIIIII", raw, 8) == (1, 64, 5, 3, 4, 6, 0, 1, zlib.crc32(raw[64:]))
    assert raw[48:64] == bytes(16)
    assert raw[64:64 + images.nbytes] == images.tobytes()
    assert raw[64 + images.nbytes:] == labels.astype("<i8").tobytes()


def test_round_trip_is_byte_exact_with_and_without_labels(tmp_path, small_fgd):
    path, images, labels = small_fgd
    ds = PackedDataset(path)
    assert len(ds) == 5 and ds.shape == (3, 4, 6)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds[2], images[2])
    assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, labels)
    assert isinstance(ds.images, np.memmap)

    plain = PackedDataset(write_fgd(tmp_path / "plain.fgd", images[:, :1]))
    assert plain.labels is None and plain.shape == (1, 4, 6)
    np.testing.assert_array_equal(plain.images, images[:, :1])


def _rewrite(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(p.read_bytes()[:40]), "truncated header: file has 40 bytes"),
    (lambda p: _rewrite(p, 0, b"GIF89a.."), "not a .fgd file"),
    (lambda p: _rewrite(p, 8, struct.pack("<I", 2)), "unsupported format version 2"),
    (lambda p: _rewrite(p, 12, struct.pack("<I", 128)), "bad header size 128"),
    (lambda p: _rewrite(p, 24, struct.pack("<I", 0)), "bad channel count 0"),
    (lambda p: _rewrite(p, 28, struct.pack("<I", 10**6)), "bad image size 1000000x6"),
    (lambda p: _rewrite(p, 16, struct.pack("<Q", 2**60)), "bad image count"),
    (lambda p: _rewrite(p, 36, struct.pack("<I", 1)), "unsupported layout 1"),
    (lambda p: _rewrite(p, 40, struct.pack("<I", 9)), "bad label type 9"),
    (lambda p: _rewrite(p, 50, b"\x01"), "reserved header bytes"),
    (lambda p: p.write_bytes(p.read_bytes()[:-9]), "truncated: header says 5 images (464 bytes), file has 455 bytes"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "header says 5 images (464 bytes), but the file has 1 extra bytes"),
    (lambda p: _rewrite(p, 100, bytes([p.read_bytes()[100] ^ 1])), "checksum mismatch"),
])
def test_bad_file_raises_naming_file_and_problem(small_fgd, corrupt, message):
    path = small_fgd[0]
    corrupt(path)
    with pytest.raises(ValueError) as info:
        PackedDataset(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_truncation_message_uses_human_sizes(tmp_path):
    path = write_fgd(tmp_path / "digits.fgd", np.zeros((1797, 1, 32, 32), np.uint8), np.zeros(1797, np.int64))
    path.write_bytes(path.read_bytes()[:900_000])
    with pytest.raises(ValueError, match=r"digits.fgd: truncated: header says 1797 images \(1.9 MB\), file has 900.0 kB"):
        PackedDataset(path)


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        PackedDataset(tmp_path / "nope.fgd")


def test_verify_false_skips_the_checksum(small_fgd):
    path = small_fgd[0]
    _rewrite(path, 100, bytes([path.read_bytes()[100] ^ 1]))
    assert len(PackedDataset(path, verify=False)) == 5


def test_writer_leaves_nothing_behind_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with FgdWriter(tmp_path / "x.fgd", 2, (1, 2, 2), False) as writer:
            writer.write(np.zeros((1, 1, 2, 2), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_writer_makes_a_file_with_ordinary_permissions_and_keeps_the_old_one_until_finish(tmp_path):
    path = write_fgd(tmp_path / "x.fgd", np.zeros((1, 1, 2, 2), np.uint8))
    old = path.read_bytes()
    old_umask = os.umask(0o022)
    try:
        with FgdWriter(path, 1, (1, 2, 2), False) as writer:
            writer.write(np.full((1, 1, 2, 2), 7, np.uint8))
            assert path.read_bytes() == old
            writer.finish()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert PackedDataset(path).images[0].max() == 7 and os.listdir(tmp_path) == ["x.fgd"]


def test_writer_rejects_a_short_count_and_absurd_shapes(tmp_path):
    with pytest.raises(ValueError, match="wrote 1 images, announced 2"):
        with FgdWriter(tmp_path / "x.fgd", 2, (1, 2, 2), False) as writer:
            writer.write(np.zeros((1, 1, 2, 2), np.uint8))
            writer.finish()
    with pytest.raises(ValueError, match="bad channel count 7"):
        FgdWriter(tmp_path / "y.fgd", 2, (7, 2, 2), False)
    assert list(tmp_path.iterdir()) == []


# ---- the two validators agree ---------------------------------------------------------------------------

def _outcome(parse, data, size):
    try:
        result = parse(data, size)
    except ValueError as e:
        return ("error", str(e))
    return ("ok", result if isinstance(result, dict) else vars(result))


def _valid_header(count, c, h, w, labels):
    size = HEADER_SIZE + count * c * h * w + (8 * count if labels else 0)
    return pack_header(count, c, h, w, labels, 0xDEADBEEF), size


def test_python_parser_accepts_what_the_writer_writes():
    data, size = _valid_header(3, 2, 5, 7, True)
    assert parse_header_py(data, size) == Header(1, 3, 2, 5, 7, 0, 1, 0xDEADBEEF, 64, 64 + 210, size)


@needs_native
def test_native_parser_matches_python_on_a_valid_header():
    data, size = _valid_header(3, 2, 5, 7, False)
    assert native.parse_header(data, size) == vars(parse_header_py(data, size))


_fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_native
@_fuzz
@given(data=st.binary(max_size=80), size=st.integers(0, 2**64 - 1))
def test_parsers_agree_on_random_bytes(data, size):
    assert _outcome(native.parse_header, data, size) == _outcome(parse_header_py, data, size)


@st.composite
def mutated_headers(draw):
    count = draw(st.integers(1, 2**40))
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 65536)), draw(st.integers(1, 65536))
    data, size = _valid_header(count, c, h, w, draw(st.booleans()))
    size = min(size, 2**64 - 1)
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, HEADER_SIZE - 1))] = draw(st.integers(0, 255))
    size = draw(st.one_of(st.just(size), st.integers(0, 2**64 - 1), st.integers(max(0, size - 9), min(size + 9, 2**64 - 1))))
    return bytes(data), size


@needs_native
@_fuzz
@given(case=mutated_headers())
def test_parsers_agree_on_mutated_valid_headers(case):
    data, size = case
    assert _outcome(native.parse_header, data, size) == _outcome(parse_header_py, data, size)


@_fuzz
@given(case=mutated_headers())
def test_python_parser_only_raises_valueerror(case):
    _outcome(parse_header_py, *case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=3))
def test_opening_a_damaged_file_raises_or_reads_consistently(tmp_path, cut, flips):
    path = tmp_path / "f.fgd"
    raw = bytearray(write_fgd(path, _images(n=7, c=2, h=5, w=5), np.arange(7)).read_bytes())
    for pos, xor in flips:
        if pos < len(raw):
            raw[pos] ^= xor
    path.write_bytes(bytes(raw[:cut] if cut < len(raw) else raw))
    try:
        ds = PackedDataset(path)
    except (ValueError, OSError):
        return
    assert read_header(path).count == len(ds) == len(ds.images)


def test_a_file_truncated_while_open_is_an_error_at_the_next_epoch_not_sigbus(tmp_path):
    from fastgan.data import Loader

    path = tmp_path / "d.fgd"
    write_fgd(path, _images(n=8, c=1, h=4, w=4))
    data = PackedDataset(path)
    loader = Loader(data, batch_size=4, seed=0, backend="python")
    assert len(list(loader)) == 2  # the whole epoch is read before the file changes
    with open(path, "r+b") as f:
        f.truncate(HEADER_SIZE + 10)  # another program rewrites the file in place
    with pytest.raises(ValueError, match=r"d.fgd: the file changed size while in use \(192 -> 74 bytes\).*SIGBUS"):
        list(loader)



def test_a_file_replaced_by_rename_while_open_is_no_danger_and_no_error(tmp_path):
    path = tmp_path / "d.fgd"
    images = _images(n=8, c=1, h=4, w=4)
    write_fgd(path, images)
    data = PackedDataset(path)
    write_fgd(path, images[:5])  # what `fastgan prepare` does: a new file renamed over the old name
    data.check_size()
    assert len(data) == 8 and np.array_equal(data.images, images)
