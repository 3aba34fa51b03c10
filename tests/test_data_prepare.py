"""The dataset tool: every source kind round-trips byte for byte into a .fgd file."""
import gzip
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from fastgan.data import PackedDataset, digits, prepare
from fastgan.cli import main


def _rng_images(n, c, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _prepared(src, tmp_path, **kwargs):
    return PackedDataset(prepare(src, tmp_path / "out.fgd", progress=False, **kwargs))


def _save_png(path, chw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)).save(path)


@pytest.fixture
def class_folder(tmp_path):
    """dog/ and cat/ sub-folders of 6x4 RGB PNGs; expected order is sorted relative path."""
    images = _rng_images(5, 3, 4, 6)
    names = ["dog/b.png", "cat/z.png", "dog/a.png", "cat/m/deep.png", "cat/a.png"]
    root = tmp_path / "folder"
    for name, im in zip(names, images):
        _save_png(root / name, im)
    (root / ".hidden.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("ignored")
    order = sorted(range(5), key=lambda i: names[i])
    labels = [0 if names[i].startswith("cat") else 1 for i in order]
    return root, images[order], np.array(labels)


def test_image_folder_with_class_subfolders(class_folder, tmp_path):
    root, images, labels = class_folder
    ds = _prepared(root, tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_flat_greyscale_folder_has_one_channel_and_no_labels(tmp_path):
    images = _rng_images(3, 1, 5, 5)
    for i, im in enumerate(images):
        _save_png(tmp_path / "g" / f"{i}.png", im)
    ds = _prepared(tmp_path / "g", tmp_path)
    assert ds.shape == (1, 5, 5) and ds.labels is None
    np.testing.assert_array_equal(ds.images, images)


def test_zip_of_images_matches_the_folder(class_folder, tmp_path):
    root, images, labels = class_folder
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(root.rglob("*.png")):
            z.write(path, path.relative_to(root).as_posix())
        z.writestr("__MACOSX/dog/._b.png", b"junk")
    ds = _prepared(archive, tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("keys", [("images", "labels"), ("x", "y"), ("x_train", "y_train")])
def test_npz_in_either_layout(tmp_path, layout, keys):
    images, labels = _rng_images(6, 3, 5, 7), np.arange(6)[::-1]
    stored = images.transpose(0, 2, 3, 1) if layout == "nhwc" else images
    np.savez(tmp_path / "a.npz", **{keys[0]: stored, keys[1]: labels})
    ds = _prepared(tmp_path / "a.npz", tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_npy_without_labels(tmp_path):
    images = _rng_images(4, 1, 3, 3)
    np.save(tmp_path / "a.npy", images[:, 0])
    ds = _prepared(tmp_path / "a.npy", tmp_path)
    assert ds.labels is None
    np.testing.assert_array_equal(ds.images, images)


def _write_idx(path, array, compress):
    raw = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files_with_labels(tmp_path, compress):
    images, labels = _rng_images(7, 1, 28, 28)[:, 0], np.arange(7, dtype=np.uint8) % 3
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    ds = _prepared(tmp_path / f"train-images-idx3-ubyte{suffix}", tmp_path)
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels)


def test_truncated_idx_file_is_rejected(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", _rng_images(2, 1, 4, 4)[:, 0], False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="idx header says shape"):
        prepare(path, tmp_path / "o.fgd", progress=False)


@pytest.fixture
def cifar_folder(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    images, labels = _rng_images(10, 3, 32, 32), np.arange(10) % 10
    for i in range(5):
        batch = {b"data": images[2 * i:2 * i + 2].reshape(2, -1), b"labels": labels[2 * i:2 * i + 2].tolist()}
        # Protocol 2, as the published CIFAR-10 batches (Python 2 pickles).
        (root / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    return root, images, labels


def test_cifar10_python_batches(cifar_folder, tmp_path):
    root, images, labels = cifar_folder
    ds = _prepared(root, tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)


class _Exploit:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_cifar10_loader_refuses_pickles_that_run_code(cifar_folder, tmp_path, capsys):
    root = cifar_folder[0]
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(ValueError, match="data_batch_3: not a CIFAR-10 python batch"):
        prepare(root, tmp_path / "o.fgd", progress=False)
    assert "pickle code ran" not in capsys.readouterr().out


def test_builtin_digits(tmp_path):
    images, labels = digits(16)
    ds = _prepared("digits", tmp_path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert _prepared("digits", tmp_path, resolution=8).shape == (1, 8, 8)


def test_resolution_and_center_crop_match_pil(tmp_path):
    images = _rng_images(2, 3, 6, 10)
    for i, im in enumerate(images):
        _save_png(tmp_path / "r" / f"{i}.png", im)
    ds = _prepared(tmp_path / "r", tmp_path, resolution=4, center_crop=True)
    assert ds.shape == (3, 4, 4)
    expected = Image.fromarray(images[1].transpose(1, 2, 0)).crop((2, 0, 8, 6)).resize((4, 4), Image.LANCZOS)
    np.testing.assert_array_equal(ds.images[1], np.asarray(expected).transpose(2, 0, 1))
    arrays = _prepared(_save_npz(tmp_path, images), tmp_path, resolution=4, center_crop=True)
    np.testing.assert_array_equal(arrays.images, ds.images)


def _save_npz(tmp_path, images):
    np.savez(tmp_path / "r.npz", images=images)
    return tmp_path / "r.npz"


def test_unreadable_image_names_the_file_and_writes_nothing(class_folder, tmp_path):
    root = class_folder[0]
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"dog/broken.png: cannot read image"):
        prepare(root, tmp_path / "o.fgd", progress=False)
    assert not any(p.name.startswith((".o.fgd", "o.fgd")) for p in tmp_path.iterdir())


def test_mixed_sizes_need_a_resolution(class_folder, tmp_path):
    root = class_folder[0]
    _save_png(root / "dog" / "big.png", _rng_images(1, 3, 8, 8)[0])
    with pytest.raises(ValueError, match="pass resolution="):
        prepare(root, tmp_path / "o.fgd", progress=False)
    assert _prepared(root, tmp_path, resolution=4).shape == (3, 4, 4)


@pytest.mark.parametrize("make, error, message", [
    (lambda p: p / "missing", FileNotFoundError, "does not exist and is not a built-in dataset"),
    (lambda p: (p / "x.bin").write_bytes(b"hello") and p / "x.bin", ValueError, "cannot tell what"),
    (lambda p: np.save(p / "f.npy", np.zeros((2, 3, 3), np.float32)) or p / "f.npy", ValueError, "must be uint8"),
    (lambda p: np.savez(p / "k.npz", a=np.zeros(1), b=np.zeros(1)) or p / "k.npz", ValueError, "no images array"),
    (lambda p: (p / "e").mkdir() or p / "e", ValueError, "no images found"),
])
def test_bad_sources_raise_clearly(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        prepare(make(tmp_path), tmp_path / "o.fgd", progress=False)


def test_command_line_entry(tmp_path, capsys):
    dst = tmp_path / "d.fgd"
    assert main(["prepare", "digits", str(dst), "--resolution", "8", "--no-progress"]) == 0
    assert "1797 images, 1x8x8" in capsys.readouterr().out
    assert main(["prepare", "digits", str(dst), "--center-crop", "--no-progress"]) == 0
    assert PackedDataset(dst).shape == (1, 16, 16)


# -- issue 18: damaged archives, RGBA arrays, 16-bit greyscale, killed and full-disk prepares ----------


def test_an_rgba_array_becomes_rgb_so_training_can_take_it(tmp_path):
    images = _rng_images(3, 4, 5, 5)
    np.save(tmp_path / "rgba.npy", images.transpose(0, 2, 3, 1))  # NHWC with alpha
    ds = _prepared(tmp_path / "rgba.npy", tmp_path)
    assert ds.shape == (3, 5, 5)
    assert np.array_equal(ds.images, images[:, :3])


def _zip_of_pngs(tmp_path, compression=zipfile.ZIP_STORED):
    path = tmp_path / "images.zip"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for i, im in enumerate(_rng_images(3, 3, 16, 16)):
            png = tmp_path / f"{i}.png"
            _save_png(png, im)
            archive.write(png, f"{i}.png")
            png.unlink()
    return path


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_zip_with_a_bad_crc_is_a_clear_error(tmp_path, capsys):
    path = _zip_of_pngs(tmp_path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("1.png")
    _flip_byte(path, info.header_offset + 30 + len("1.png") + info.file_size // 2)  # inside 1.png's data
    with pytest.raises(ValueError, match=r"images.zip/1.png: damaged zip member \(bad CRC"):
        prepare(path, tmp_path / "out.fgd", progress=False)
    assert main(["prepare", str(path), str(tmp_path / "out.fgd"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "damaged zip member" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.zip"]


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_a_damaged_npz_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, images=_rng_images(50, 1, 16, 16))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        _flip_byte(path, path.stat().st_size // 3)
    with pytest.raises(ValueError, match=r"a.npz: not a readable .npz file \(damaged or truncated\?\)"):
        prepare(path, tmp_path / "out.fgd", progress=False)


def test_16_bit_greyscale_pngs_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 51000, 65535]], dtype=np.uint16)
    (tmp_path / "folder").mkdir()
    Image.fromarray(values).save(tmp_path / "folder" / "wide.png")
    with Image.open(tmp_path / "folder" / "wide.png") as im:
        assert im.mode.startswith("I")  # PIL reads the PNG as 16-bit
    ds = _prepared(tmp_path / "folder", tmp_path)
    assert ds.shape == (1, 1, 4)
    assert ds.images[0, 0, 0].tolist() == [0, 1, 198, 255]  # round(v / 257)


def test_a_full_disk_during_prepare_is_one_line_and_leaves_no_file(tmp_path):
    # RLIMIT_FSIZE stands for a full disk without root: writes past the limit fail (EFBIG once SIGXFSZ is ignored).
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "digits.fgd"
    proc = subprocess.run([sys.executable, "-m", "fastgan", "prepare", "digits", str(out), "--no-progress"],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"{out}: File too large (the disk is full" in proc.stderr
    assert os.listdir(tmp_path) == []
