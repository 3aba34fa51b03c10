"""What the fault and run-folder tests share: a small MLP run on 8 px digits (as TrainConfig fields and as
command-line options), and the check that a command failed with one line on stderr."""
from fastgan.cli import main
from fastgan.train import TrainConfig

SMALL = dict(dataset="digits", resolution=8, model="mlp", mlp_hidden=(32, 32), z_dim=8, batch_size=16,
             progress=False, log_every=2, sample_every=1000, ckpt_every=2, threads=1)
CLI_SMALL = ["--dataset", "digits", "--resolution", "8", "--model", "mlp", "--mlp-hidden", "32,32", "--z-dim", "8",
             "--batch-size", "16", "--log-every", "2", "--sample-every", "1000", "--threads", "1", "--no-progress"]


def small(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path), **{**SMALL, **overrides})


def one_line_error(capsys, status: int, argv: list[str]) -> str:
    """Run `fastgan argv`, check it failed with `status` and one line on stderr (warnings aside), no traceback;
    return the line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  warnings.warn")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]
