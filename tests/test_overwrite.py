"""No surprise overwrite, no special file read, one line per error: prepare, plot, sample and eval never write over
their own input or over a file of a kind they do not make, refuse FIFOs at once, and say what is wrong in one
line that names the file."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from small_runs import SMALL, one_line_error

from fastgan.cli import main
from fastgan.train import TrainConfig, load_checkpoint, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(TrainConfig(out_dir=str(tmp_path_factory.mktemp("runs")), name="r", steps=4, **SMALL))


# -- prepare -----------------------------------------------------------------------------------------


def test_prepare_never_writes_over_its_own_input(tmp_path, capsys):
    source = tmp_path / "same.npy"
    np.save(source, np.zeros((4, 8, 8), np.uint8))
    before = source.read_bytes()
    for dst in (str(source), str(tmp_path / "." / "same.npy")):
        line = one_line_error(capsys, 2, ["prepare", str(source), dst, "--no-progress", "--force"])
        assert line.endswith(f"is also the input {source}; write the output to another file")
    assert source.read_bytes() == before


def test_prepare_replaces_a_fgd_file_but_nothing_else_without_force(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    line = one_line_error(capsys, 2, ["prepare", "digits", str(notes), "--no-progress"])
    assert line == (f"fastgan prepare: error: {notes}: exists and is not a .fgd dataset, which is all this command "
                    f"replaces; pass --force to replace it anyway, or choose another output")
    assert notes.read_text() == "my notes"
    out = tmp_path / "d.fgd"
    assert main(["prepare", "digits", str(out), "--no-progress"]) == 0
    assert main(["prepare", "digits", str(out), "--no-progress", "--resolution", "8"]) == 0  # a .fgd: replaced
    assert main(["prepare", "digits", str(notes), "--no-progress", "--force"]) == 0
    assert notes.read_bytes().startswith(b"\x89FGD")


def test_prepare_refuses_to_write_into_a_folder_or_over_a_symlink(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert "exists and is a folder" in one_line_error(capsys, 2, ["prepare", "digits", str(tmp_path / "folder"),
                                                                   "--no-progress", "--force"])
    target = tmp_path / "target.txt"
    target.write_text("kept")
    (tmp_path / "link.fgd").symlink_to(target)
    assert "exists and is a symlink" in one_line_error(capsys, 2, ["prepare", "digits", str(tmp_path / "link.fgd"),
                                                                    "--no-progress"])
    assert target.read_text() == "kept"


# -- plot and sample --------------------------------------------------------------------------------


def test_plot_never_writes_a_png_over_a_checkpoint(run, capsys):
    before = (run / "checkpoint.pt").read_bytes()
    line = one_line_error(capsys, 2, ["plot", str(run), "--out", str(run / "checkpoint.pt")])
    assert line.startswith(f"fastgan plot: error: {run / 'checkpoint.pt'}: exists and is not a PNG image")
    assert (run / "checkpoint.pt").read_bytes() == before
    line = one_line_error(capsys, 2, ["plot", str(run), "--out", str(run / "metrics.jsonl"), "--force"])
    assert "is also the input" in line


def test_plot_replaces_a_png(run, tmp_path):
    out = tmp_path / "c.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    assert main(["plot", str(run), "--out", str(out)]) == 0


def test_sample_never_writes_over_the_checkpoint_or_another_kind_of_file(run, tmp_path, capsys):
    ckpt = tmp_path / "c.png"
    ckpt.write_bytes((run / "checkpoint.pt").read_bytes())
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(ckpt), "--out", str(ckpt), "--force"])
    assert line.endswith("is also the input " + str(ckpt) + "; write the output to another file")
    notes = tmp_path / "notes.png"
    notes.write_text("not a png")
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(run), "--out", str(notes)])
    assert f"{notes}: exists and is not a PNG image" in line
    assert notes.read_text() == "not a png"
    assert main(["sample", "--ckpt", str(run), "--out", str(notes), "--force"]) == 0
    assert main(["sample", "--ckpt", str(run), "--out", str(notes)]) == 0  # now a PNG: replaced


def test_sample_n_is_bounded_before_anything_is_drawn(run, tmp_path, capsys):
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(run), "--n", "100000000", "--out",
                                      str(tmp_path / "s.png")])
    assert line == "fastgan sample: error: --n must be at most 65,536; got 100,000,000"
    line = one_line_error(capsys, 2, ["sample", "--ckpt", str(run), "--n", "60000", "--out", str(tmp_path / "s.png")])
    assert line.startswith("fastgan sample: error: --n must be at most 21,845 for images: a PNG grid of 60,000 images "
                           "is over PIL's")
    assert not (tmp_path / "s.png").exists()


# -- non-finite weights ----------------------------------------------------------------------------


def _nan_checkpoint(run, tmp_path):
    state = load_checkpoint(run)
    for tensors in (state["networks"]["generator"], state["ema"]):
        key = next(iter(tensors))
        tensors[key] = torch.full_like(tensors[key], float("nan"))
    buffer = io.BytesIO()
    torch.save({**state, "version": 1}, buffer)  # a version 1 file: fastgan's marker, no checksum header
    path = tmp_path / "nan.pt"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_checkpoint_with_nan_weights_is_refused_with_one_line(run, tmp_path, capsys, command):
    path = _nan_checkpoint(run, tmp_path)
    line = one_line_error(capsys, 2, [command, "--ckpt", str(path), "--n", "64",
                                      *(["--out", str(tmp_path / "s.png")] if command == "sample" else [])])
    assert f"{path}: the checkpoint's generator weights are not finite (NaN or infinity in " in line
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_a_resume_from_nan_weights_is_refused(tmp_path, capsys):
    run = train(TrainConfig(out_dir=str(tmp_path), name="r", steps=2, **SMALL))
    path = _nan_checkpoint(run, tmp_path)
    os.replace(path, run / "checkpoint.pt")
    line = one_line_error(capsys, 2, ["train", "--out-dir", str(tmp_path), "--name", "r", "--resume", "--steps", "4",
                                      "--no-progress"])
    assert f"{run}: the checkpoint's generator weights are not finite" in line and "a resume is refused" in line


# -- special files, bad values, read errors ----------------------------------------------------------


WHAT = {("train", "x.fgd"): ".fgd dataset", ("train", "x.npy"): "sequence file", ("prepare", "x.npy"): "prepare input",
        ("train", "x.toml"): "--config file"}


def _fifo(path):
    os.mkfifo(path)
    return path


def _fastgan(*args, timeout=60) -> subprocess.CompletedProcess:
    """fastgan in a child process: a hang is a timeout, not a stuck test session."""
    return subprocess.run([sys.executable, "-m", "fastgan", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name, args", [
    ("x.fgd", ["train", "--dataset", "{fifo}", "--steps", "2", "--out-dir", "{tmp}"]),
    ("x.npy", ["train", "--model", "rgan", "--dataset", "{fifo}", "--steps", "2", "--out-dir", "{tmp}"]),
    ("x.npy", ["prepare", "{fifo}", "{tmp}/o.fgd"]),
    ("x.fgd", ["eval", "--ckpt", "{run}", "--dataset", "{fifo}", "--n", "64"]),
    ("x.toml", ["train", "--config", "{fifo}", "--out-dir", "{tmp}"]),
])
def test_a_fifo_as_input_is_refused_at_once(run, tmp_path, name, args):
    fifo = _fifo(tmp_path / name)
    args = [a.format(fifo=fifo, tmp=tmp_path, run=run) for a in args]
    result = _fastgan(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and str(fifo) in lines[0], result.stderr
    if args[0] != "eval":  # eval's metrics look for a regular file, and say they found none
        assert lines[0].endswith(f"{fifo}: the {WHAT[args[0], name]} is a FIFO (named pipe), not a regular file; "
                                 f"fastgan reads only regular files{' and folders' if args[0] == 'prepare' else ''} "
                                 f"there")


def test_a_fifo_among_the_images_of_a_folder_is_refused(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    fifo = _fifo(tmp_path / "imgs" / "b.png")
    result = _fastgan("prepare", str(tmp_path / "imgs"), str(tmp_path / "o.fgd"))
    assert result.returncode == 2 and f"{fifo}: the image is a FIFO" in result.stderr


def test_a_bad_option_value_is_one_line_pointing_to_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--steps", "abc"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == ("fastgan train: error: argument --steps: invalid int value: 'abc' (see fastgan train --help)\n")


def test_a_truncated_png_is_named(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (16, 16, 3), np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png")
    data = (tmp_path / "imgs" / "1.png").read_bytes()
    (tmp_path / "imgs" / "1.png").write_bytes(data[:len(data) // 2])
    line = one_line_error(capsys, 2, ["prepare", str(tmp_path / "imgs"), str(tmp_path / "o.fgd"), "--no-progress"])
    assert line.startswith(f"fastgan prepare: error: {tmp_path / 'imgs' / '1.png'}: ")
    assert not (tmp_path / "o.fgd").exists()


def test_a_non_utf8_toml_is_named(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_bytes(b'steps = 5\nname = "\xff\xfe"\n')
    line = one_line_error(capsys, 2, ["train", "--config", str(config), "--out-dir", str(tmp_path / "runs")])
    assert line.startswith(f"fastgan train: error: {config}: ")
    assert not (tmp_path / "runs").exists()
