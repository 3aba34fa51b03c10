"""The fastgan command line."""
import dataclasses
import json
import subprocess
import sys

import pytest

from fastgan.cli import build_parser, main
from fastgan.train import TrainConfig

TINY = ["--resolution", "16", "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16",
        "--no-progress", "--log-every", "2"]


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "fastgan", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("train", "sample", "eval", "plot", "prepare", "bench"):
        assert command in out


def test_train_help_has_an_option_for_every_config_field(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert "--config FILE.toml" in out


def test_train_then_sample(tmp_path, capsys):
    assert main(["train", *TINY, "--steps", "4", "--out-dir", str(tmp_path), "--name", "cli"]) == 0
    run = tmp_path / "cli"
    assert (run / "samples.png").exists() and (run / "checkpoint.pt").exists()
    assert json.loads((run / "config.json").read_text())["g_width"] == 8
    out = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(run), "--n", "9", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "wrote 9 samples of step 4" in capsys.readouterr().out


def test_config_file_is_read_and_options_override_it(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('steps = 2\nlr_g = 0.001\nmlp_hidden = [16, 16]\nname = "from-toml"\nmodel = "mlp"\n')
    args = build_parser().parse_args(["train", "--config", str(cfg), "--steps", "3", "--out-dir", str(tmp_path)])
    from fastgan.cli import config_from_args

    config = config_from_args(args)
    assert (config.steps, config.lr_g, config.mlp_hidden, config.model) == (3, 0.001, (16, 16), "mlp")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "stylegan"], "invalid choice: 'stylegan'"),
        (["train", "--steps", "many"], "invalid int value: 'many'"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_get_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_values_get_a_one_line_error_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--steps", "0", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "fastgan train: error: TrainConfig.steps: must be >= 1; got 0"
    assert main(["sample", "--ckpt", str(tmp_path / "missing")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = \n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_bench_prints_samples_per_second(capsys):
    assert main(["bench", *TINY, "--iters", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "model=dcgan" in out and "samples/s" in out


def test_version_names_the_implementation_of_each_layer(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fastgan ")
    assert lines[1].startswith("fused ops: ") and lines[2].startswith("data loader: ")


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    assert main(["--debug", "train", "--steps", "0", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("TrainConfig.steps: must be >= 1; got 0")


def test_model_choices_and_help_come_from_the_family_declarations(capsys):
    from fastgan.train.families import FAMILIES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for declared in FAMILIES.values():
        assert declared.name in out and " ".join(declared.summary.split()) in out


def test_version_with_a_bad_switch_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("FASTGAN_LOADER", "rust")
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == "fastgan: error: FASTGAN_LOADER must be one of native, python; got 'rust'"


def test_a_warning_is_one_line_naming_the_command(tmp_path):
    # In a child process: pytest records the warnings of the tests it runs, so none would reach stderr here.
    result = subprocess.run([sys.executable, "-m", "fastgan", "train", *TINY, "--steps", "1", "--compile",
                             "--out-dir", str(tmp_path), "--name", "w"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "fastgan train: warning: --compile: torch.compile does not speed up training on cpu (a compiled DCGAN-32 "
        "step ran at 0.94x of eager on the CPU); training eagerly"], result.stderr
