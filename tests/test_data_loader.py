"""The Loader: C++ and NumPy paths agree bit for bit; epochs, shards, flips and normalisation are exact."""
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.data import ArrayDataset, Loader, PackedDataset
from fastgan.data.format import write_fgd
from fastgan.data.loader import (BFLOAT16_LUT, FLOAT32_LUT, NORMALISE_OFFSET, NORMALISE_SCALE, describe,
                                 epoch_permutation, normalise, rank_order)

try:
    from fastgan import _loader as native
except ImportError:
    native = None

needs_native = pytest.mark.skipif(native is None, reason="fastgan._loader is not built")
REPO = Path(__file__).resolve().parents[1]


def _dataset(n=103, c=3, h=5, w=7, seed=0):
    """Labels are the sample indices, so each batch says exactly which samples it holds."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    return ArrayDataset(images, np.arange(n))


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@needs_native
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("rank, world_size, drop_last", [(0, 1, True), (0, 1, False), (1, 3, True), (2, 3, False)])
def test_native_and_python_batches_are_identical(dtype, hflip, rank, world_size, drop_last):
    data = _dataset()
    kwargs = dict(batch_size=8, seed=5, hflip=hflip, dtype=dtype, rank=rank, world_size=world_size,
                  drop_last=drop_last, num_threads=3, prefetch=2)
    cpp, ref = Loader(data, backend="native", **kwargs), Loader(data, backend="python", **kwargs)
    for epoch in (0, 4):
        cpp.set_epoch(epoch)
        ref.set_epoch(epoch)
        a, b = _epoch(cpp), _epoch(ref)
        assert len(a) == len(b) == len(cpp)
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == xb.dtype == dtype and ya.dtype == yb.dtype == torch.int64
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@needs_native
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [1, 7, 8, 9, 16, 30, 64])
def test_native_and_python_mirror_and_normalise_alike_at_every_width(dtype, width):
    # Rows are mirrored eight bytes at a time with a byte-wise tail, so widths around 8 cover both.
    data = _dataset(n=24, c=2, h=3, w=width, seed=width)
    kwargs = dict(batch_size=6, seed=1, hflip=True, dtype=dtype, num_threads=2)
    for (xa, ya), (xb, yb) in zip(_epoch(Loader(data, backend="native", **kwargs)),
                                  _epoch(Loader(data, backend="python", **kwargs))):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@needs_native
@pytest.mark.parametrize("hflip", [False, True])
def test_native_maps_every_byte_value_to_the_documented_table(hflip):
    images = np.arange(256, dtype=np.uint8).reshape(4, 1, 8, 8)
    order, flips = np.arange(4), np.full(4, hflip, dtype=np.uint8)
    expected = images[..., ::-1] if hflip else images
    for dtype, table in (("float32", FLOAT32_LUT), ("bfloat16", BFLOAT16_LUT)):
        stream = native.BatchStream(images, None, order, flips, 4, dtype, 1, 1, scale=NORMALISE_SCALE,
                                    offset=NORMALISE_OFFSET)
        (x, _), = list(stream)
        assert x.dtype == table.dtype
        np.testing.assert_array_equal(x.view(np.uint8), table[expected].view(np.uint8))


@needs_native
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
def test_native_batches_start_on_a_cache_line(dtype):
    loader = Loader(_dataset(n=40, w=5), batch_size=3, dtype=dtype, hflip=True, backend="native", num_threads=2)
    assert all(x.data_ptr() % 64 == 0 for x, _ in loader)


@needs_native
def test_every_vector_form_is_listed_from_the_baseline_up():
    isas = native.supported_isas()
    assert isas[0] == "baseline" and list(isas) == ["baseline", "avx2", "avx512"][:len(isas)]


@needs_native
@pytest.mark.parametrize("width", [1, 7, 8, 9, 15, 16, 17, 24, 28, 31, 32, 33, 64, 65, 96, 100])
@pytest.mark.parametrize("channels, height", [(1, 1), (3, 5)])
def test_every_vector_form_writes_the_documented_table(width, channels, height):
    # Widths that are and are not whole AVX2 (8 floats, 32 mirrored bytes) and AVX-512 (16 floats) vectors,
    # and sample sizes that leave later samples off the buffer's 64-byte alignment, mirrored and not: the
    # vector forms, their one-pass mirror, the scratch mirror and the scalar heads and tails all run, and
    # each must equal the table (uint8: the bytes themselves).
    images = np.random.default_rng(width).integers(0, 256, size=(11, channels, height, width), dtype=np.uint8)
    images[0].flat[:256] = np.arange(min(256, images[0].size))
    order = np.random.default_rng(1).permutation(11)
    flips = (np.arange(11) % 3 != 0).astype(np.uint8)
    expected = images[order]
    expected[flips == 1] = expected[flips == 1][..., ::-1]
    for isa in native.supported_isas():
        for dtype, table in (("uint8", np.arange(256, dtype=np.uint8)), ("float32", FLOAT32_LUT),
                             ("bfloat16", BFLOAT16_LUT)):
            normalise_args = {} if dtype == "uint8" else dict(scale=NORMALISE_SCALE, offset=NORMALISE_OFFSET)
            stream = native.BatchStream(images, None, order, flips, 4, dtype, 2, 2, isa=isa, **normalise_args)
            got = np.concatenate([x for x, _ in stream])
            np.testing.assert_array_equal(got.view(np.uint8), table[expected].view(np.uint8), err_msg=f"{isa} {dtype}")


@pytest.mark.parametrize("backend", ["native", "python"])
def test_each_epoch_yields_every_sample_exactly_once(backend):
    if backend == "native" and native is None:
        pytest.skip("fastgan._loader is not built")
    loader = Loader(_dataset(n=100), batch_size=10, backend=backend)
    seen = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        labels = torch.cat([y for _, y in loader]).numpy()
        assert sorted(labels) == list(range(100))
        seen.append(labels)
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
    loader.set_epoch(1)
    assert np.array_equal(torch.cat([y for _, y in loader]).numpy(), seen[1])


def test_drop_last_keeps_full_batches_of_distinct_samples():
    loader = Loader(_dataset(n=103), batch_size=10)
    batches = list(loader)
    assert len(loader) == len(batches) == 10 and all(len(y) == 10 for _, y in batches)
    labels = torch.cat([y for _, y in batches]).numpy()
    assert len(set(labels)) == 100
    np.testing.assert_array_equal(labels, epoch_permutation(103, 0, 0)[:100])


def test_without_drop_last_the_last_batch_is_short():
    loader = Loader(_dataset(n=103), batch_size=10, drop_last=False, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 11 and len(batches[-1][1]) == 3
    np.testing.assert_array_equal(torch.cat([y for _, y in batches]).numpy(), np.arange(103))


def test_ranks_get_disjoint_complete_shards_with_equal_batch_counts():
    n, b, world = 103, 8, 3
    loaders = [Loader(_dataset(n=n), batch_size=b, seed=1, rank=r, world_size=world) for r in range(world)]
    shards = [torch.cat([y for _, y in loader]).numpy() for loader in loaders]
    assert {len(loader) for loader in loaders} == {n // (world * b)}
    assert all(len(s) == n // (world * b) * b for s in shards)
    union = np.concatenate(shards)
    assert len(set(union)) == len(union)
    assert set(union) == set(epoch_permutation(n, 1, 0)[:len(union)])


def test_ranks_without_drop_last_cover_everything_by_cyclic_padding():
    n, b, world = 10, 3, 4
    loaders = [Loader(_dataset(n=n), batch_size=b, rank=r, world_size=world, drop_last=False) for r in range(world)]
    shards = [torch.cat([y for _, y in loader]).numpy() for loader in loaders]
    assert {len(loader) for loader in loaders} == {1}
    assert [len(s) for s in shards] == [3, 3, 3, 3]
    perm = epoch_permutation(n, 0, 0)
    assert sorted(np.concatenate(shards)) == sorted(np.concatenate([perm, perm[:2]]))


def test_normalisation_is_the_documented_float32_formula():
    k = np.arange(256)
    np.testing.assert_array_equal(FLOAT32_LUT, k.astype(np.float32) * np.float32(2 / 255) - np.float32(1))
    # Two float32 roundings (of 2/255, then of the product) stay within 2 ulp of 1 of the exact value.
    assert np.max(np.abs(FLOAT32_LUT.astype(np.float64) - (k * 2 / 255 - 1))) <= 2**-22
    assert FLOAT32_LUT[0] == -1 and FLOAT32_LUT[255] == 1
    as_torch = torch.from_numpy(FLOAT32_LUT).to(torch.bfloat16)  # torch rounds to nearest-even as well
    assert torch.equal(torch.from_numpy(BFLOAT16_LUT.view(np.int16)).view(torch.bfloat16), as_torch)


@pytest.mark.parametrize("dtype, table", [(torch.float32, FLOAT32_LUT), (torch.bfloat16, BFLOAT16_LUT)])
def test_normalise_maps_every_byte_value_to_the_documented_table(dtype, table):
    values = torch.arange(256, dtype=torch.uint8)
    as_bits = torch.int32 if dtype == torch.float32 else torch.int16
    expected = torch.from_numpy(table.view(np.int32 if dtype == torch.float32 else np.int16))
    assert torch.equal(normalise(values, dtype).view(as_bits), expected)
    # Non-contiguous, channels_last and empty inputs keep their shape and values.
    images = torch.arange(2 * 3 * 5 * 4, dtype=torch.uint8).reshape(2, 3, 5, 4)
    for x in (images.transpose(2, 3), images.to(memory_format=torch.channels_last), images[:, :, :, ::2],
              images[:0]):
        out = normalise(x, dtype)
        assert out.dtype == dtype and out.shape == x.shape
        assert torch.equal(out.view(as_bits), expected[x.long()])


def test_normalise_rejects_what_is_not_a_uint8_batch():
    with pytest.raises(ValueError, match="images must be uint8"):
        normalise(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.bfloat16"):
        normalise(torch.zeros(2, 3, dtype=torch.uint8), torch.float16)


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_normalise_on_device_gives_the_same_batches(backend, dtype):
    if backend == "native" and native is None:
        pytest.skip("fastgan._loader is not built")
    data = _dataset(n=50, w=16)
    kwargs = dict(batch_size=8, seed=2, hflip=True, dtype=dtype, backend=backend, drop_last=False)
    on_device = Loader(data, normalise_on_device=True, **kwargs)
    assert on_device._gathered == torch.uint8
    for epoch in (0, 3):
        on_device.set_epoch(epoch)
        plain = Loader(data, **kwargs)
        plain.set_epoch(epoch)
        pairs = list(zip(_epoch(on_device), _epoch(plain)))
        assert len(pairs) == len(plain)
        for (xa, ya), (xb, yb) in pairs:
            assert xa.dtype == xb.dtype == dtype
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("backend", ["native", "python"])
def test_batches_equal_the_closed_form_of_gather_flip_normalise(backend):
    if backend == "native" and native is None:
        pytest.skip("fastgan._loader is not built")
    data = _dataset(n=40)
    kwargs = dict(batch_size=8, seed=3, hflip=True, drop_last=False, backend=backend)
    order, flips = rank_order(40, 8, 3, 0, True, True, False, 0, 1)
    assert 0 < flips.sum() < 40
    expected = data.images[order].copy()
    expected[flips == 1] = expected[flips == 1][..., ::-1]
    got = torch.cat([x for x, _ in Loader(data, dtype=torch.uint8, **kwargs)]).numpy()
    np.testing.assert_array_equal(got, expected)
    got = torch.cat([x for x, _ in Loader(data, dtype=torch.float32, **kwargs)])
    assert torch.equal(got, torch.from_numpy(expected).float() * np.float32(2 / 255) - 1)
    assert got.min() >= -1 and got.max() <= 1
    got = torch.cat([x for x, _ in Loader(data, dtype=torch.bfloat16, **kwargs)])
    assert torch.equal(got, (torch.from_numpy(expected).float() * np.float32(2 / 255) - 1).bfloat16())


@needs_native
def test_a_held_batch_is_never_overwritten():
    loader = Loader(_dataset(n=200), batch_size=4, prefetch=1, num_threads=2)
    it = iter(loader)
    held, _ = next(it)
    snapshot = held.clone()
    for _ in it:
        pass
    assert torch.equal(held, snapshot)
    kept = list(loader)
    again = _epoch(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(kept, again))


@needs_native
def test_buffers_are_recycled_once_dropped():
    data = _dataset(n=400)
    order = np.arange(400, dtype=np.int64)
    stream = native.BatchStream(data.images, data.labels, order, None, 4, "float32", 2, 3)
    for x, y in stream:
        del x, y
    assert stream.buffers_allocated <= 3 + 2


@needs_native
def test_successive_streams_reuse_one_pool_when_their_buffers_fit():
    data = _dataset(n=400)
    order = np.arange(400, dtype=np.int64)
    pool = None
    for epoch in range(4):
        stream = native.BatchStream(data.images, data.labels, np.roll(order, epoch), None, 4, "float32", 2, 3,
                                    pool=pool)
        labels = np.concatenate([y.copy() for _, y in stream])
        np.testing.assert_array_equal(labels, np.roll(order, epoch))
        pool = stream.pool
    # Each epoch holds at least prefetch = 3 buffers at once; four fresh pools would have made 12 or more.
    assert 3 <= pool.buffers_allocated <= 3 + 2
    other_size = native.BatchStream(data.images, data.labels, order, None, 8, "float32", 2, 3, pool=pool)
    assert len(list(other_size)) == 50
    assert other_size.pool is not pool and pool.buffers_allocated <= 3 + 2


def _loader_threads():
    # The loader's own threads only: other tests leave threads (tqdm's monitor, thread pools) that end on their
    # own schedule.
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # the thread ended while being listed
            pass
    return names.count("fastgan-loader")


@needs_native
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc to count threads")
def test_abandoned_iterator_joins_its_threads():
    before = _loader_threads()
    loader = Loader(_dataset(n=400), batch_size=4, num_threads=3)
    it = iter(loader)
    next(it)
    assert _loader_threads() == before + 3
    del it
    assert _loader_threads() == before
    for _ in loader:
        break
    assert _loader_threads() == before


@needs_native
@pytest.mark.parametrize("ending", ["pass", "sys.exit(0)", "os._exit(0)"])
def test_interpreter_exit_with_a_live_iterator_does_not_hang(ending):
    script = textwrap.dedent(f"""
        import os, sys
        import numpy as np
        from fastgan.data import Loader
        loader = Loader((np.zeros((5000, 3, 8, 8), np.uint8), None), batch_size=2, num_threads=2, backend="native")
        it = iter(loader)
        batch = next(it)
        {ending}
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_accepts_a_path_a_packed_dataset_an_array_dataset_and_a_tuple(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(12, 1, 4, 4), dtype=np.uint8)
    path = write_fgd(tmp_path / "d.fgd", images)
    sources = [path, str(path), PackedDataset(path), ArrayDataset(images), (images, None)]
    results = [_epoch(Loader(s, batch_size=4, seed=2)) for s in sources]
    for batches in results:
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, results[0]))
        assert all(torch.equal(y, torch.zeros(4, dtype=torch.int64)) for _, y in batches)


def test_environment_variable_selects_the_python_path(monkeypatch):
    monkeypatch.setenv("FASTGAN_LOADER", "python")
    assert Loader(_dataset(), batch_size=4).backend == "python"


@needs_native
def test_environment_variable_selects_the_native_path_and_the_argument_overrides_it(monkeypatch):
    monkeypatch.setenv("FASTGAN_LOADER", "native")
    assert Loader(_dataset(), batch_size=4).backend == "native"
    assert Loader(_dataset(), batch_size=4, backend="python").backend == "python"


@pytest.mark.parametrize("old, new", [("cpp", "native"), ("numpy", "python"), (" NumPy ", "python")])
def test_the_earlier_names_are_accepted_and_reported_by_their_new_names(monkeypatch, old, new):
    if new == "native" and native is None:
        pytest.skip("fastgan._loader is not built")
    monkeypatch.setenv("FASTGAN_LOADER", old)
    assert Loader(_dataset(), batch_size=4).backend == new
    monkeypatch.delenv("FASTGAN_LOADER")
    assert Loader(_dataset(), batch_size=4, backend=old).backend == new


def test_an_unknown_environment_value_is_an_error_naming_the_choices(monkeypatch):
    monkeypatch.setenv("FASTGAN_LOADER", "rust")
    with pytest.raises(ValueError, match=r"^FASTGAN_LOADER must be one of native, python; got 'rust'$"):
        Loader(_dataset(), batch_size=4)
    with pytest.raises(ValueError, match=r"^FASTGAN_LOADER must be one of native, python; got 'rust'$"):
        describe()


def test_an_unknown_backend_argument_is_an_error_naming_the_choices(monkeypatch):
    monkeypatch.setenv("FASTGAN_LOADER", "python")  # the argument is checked, not the environment
    with pytest.raises(ValueError, match=r"^Loader: backend must be one of native, python; got 'rust'$"):
        Loader(_dataset(), batch_size=4, backend="rust")


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=200), "fewer than batch_size"),
    (dict(batch_size=4, dtype=torch.float16), "dtype must be"),
    (dict(batch_size=4, rank=2, world_size=2), "rank < world_size"),
    (dict(batch_size=4, prefetch=0), "prefetch must be"),
    (dict(batch_size=4, dtype=torch.uint8, normalise_on_device=True), "with dtype=torch.uint8 leave it off"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Loader(_dataset(), **kwargs)


@needs_native
def test_native_stream_rejects_bad_arguments():
    data = _dataset(n=10)
    with pytest.raises(ValueError, match="outside"):
        native.BatchStream(data.images, data.labels, np.array([0, 10]), None, 2, "uint8", 1, 1)
    with pytest.raises(ValueError, match="flips"):
        native.BatchStream(data.images, data.labels, np.array([0, 1]), np.zeros(3, np.uint8), 2, "uint8", 1, 1)
    with pytest.raises(ValueError, match="dtype must be uint8, float32 or bfloat16; got 'float16'"):
        native.BatchStream(data.images, data.labels, np.array([0, 1]), None, 2, "float16", 1, 1)
    with pytest.raises(ValueError, match="not uint8"):
        native.BatchStream(data.images, data.labels, np.array([0, 1]), None, 2, "uint8", 1, 1, scale=0.5)
    with pytest.raises(ValueError, match="isa must be one of baseline, avx2, avx512"):
        native.BatchStream(data.images, data.labels, np.array([0, 1]), None, 2, "float32", 1, 1, isa="sse9")


def _without_extension(monkeypatch):
    import fastgan.data.loader as loader_module

    monkeypatch.setattr(loader_module, "_native", lambda: None)


def test_without_the_extension_the_automatic_choice_is_python_silently(monkeypatch):
    monkeypatch.delenv("FASTGAN_LOADER", raising=False)
    _without_extension(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Loader(_dataset(), batch_size=4).backend == "python"
        assert describe() == "data loader: python (fastgan._loader not built)"


@pytest.mark.parametrize("setting, forced_by", [
    (dict(env="native"), "FASTGAN_LOADER=native"),
    (dict(env="cpp"), "FASTGAN_LOADER=cpp"),
    (dict(backend="native"), "Loader: backend='native'"),
])
def test_forcing_native_without_the_extension_is_an_error_saying_how_to_build_it(monkeypatch, setting, forced_by):
    monkeypatch.delenv("FASTGAN_LOADER", raising=False)
    if "env" in setting:
        monkeypatch.setenv("FASTGAN_LOADER", setting["env"])
    _without_extension(monkeypatch)
    message = (f"{forced_by} needs the compiled extension fastgan._loader; "
               "reinstall with pip install -e . to build it")
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        Loader(_dataset(), batch_size=4, backend=setting.get("backend"))
    if "env" in setting:
        with pytest.raises(ImportError, match=re.escape(message)):
            describe()


def test_describe_says_which_loader_is_used_and_why(monkeypatch):
    monkeypatch.setenv("FASTGAN_LOADER", "python")
    assert describe() == "data loader: python (FASTGAN_LOADER=python)"
    monkeypatch.delenv("FASTGAN_LOADER")
    if native is not None:
        isa = native.supported_isas()[-1]
        assert describe() == f"data loader: native (fastgan._loader built; {isa} pixel loops)"
        monkeypatch.setenv("FASTGAN_LOADER", "native")
        assert describe() == f"data loader: native (FASTGAN_LOADER=native; {isa} pixel loops)"
    else:
        assert describe() == "data loader: python (fastgan._loader not built)"


@pytest.mark.parametrize("device, on_device", [("cpu", False), ("cuda", True), ("cuda:1", True)])
def test_training_normalises_on_the_device_only_on_a_gpu(device, on_device):
    from types import SimpleNamespace

    from fastgan.train.real_data import ImageData

    config = SimpleNamespace(dataset="digits", resolution=8, batch_size=16, seed=0, hflip=False)
    data = ImageData(config, SimpleNamespace(rank=0, world_size=1), device)  # builds the loader, moves nothing yet
    assert data.loader.normalise_on_device is on_device and data.loader.dtype == torch.float32
