"""--tensorboard events, the curves.png of a run, and `fastgan plot`."""
import sys

import pytest
from PIL import Image

from fastgan.cli import main
from fastgan.train import TrainConfig, train
from fastgan.train.curves import panels, smooth

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(dataset="digits", resolution=16, model="dcgan", g_width=8, d_width=8, z_dim=8, batch_size=16,
             progress=False, log_every=2, sample_every=2, ckpt_every=1000, n_samples=9)
TINY = ["--resolution", "16", "--g-width", "8", "--d-width", "8", "--z-dim", "8", "--batch-size", "16",
        "--no-progress", "--log-every", "2", "--steps", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 4-step run with TensorBoard and an evaluation at its end, and a plain 2-step run."""
    out = tmp_path_factory.mktemp("runs")
    board = train(TrainConfig(out_dir=str(out), name="board", steps=4, tensorboard=True, eval_every=4, eval_n=64,
                              **SMALL))
    plain = train(TrainConfig(out_dir=str(out), name="plain", steps=2, **SMALL))
    return board, plain


def test_tensorboard_events_hold_losses_logits_speed_evaluations_and_samples(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs[0] / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"train/d_loss", "train/g_loss", "train/real_logit", "train/fake_logit", "train/img_per_s",
            "eval/fid", "eval/kid"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/g_loss")] == [2, 4]
    assert [e.step for e in events.Scalars("eval/fid")] == [4]
    assert [e.step for e in events.Images("samples")] == [2, 4]
    assert not (runs[1] / "tensorboard").exists()  # off by default


def test_missing_tensorboard_is_a_one_line_error_and_leaves_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", *TINY, "--tensorboard", "--out-dir", str(tmp_path), "--name", "r"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'fastgan[tensorboard]'" in err
    assert not (tmp_path / "r").exists()


def test_each_run_draws_its_curves_at_its_checkpoints(runs):
    for run in runs:
        with Image.open(run / "curves.png") as image:
            assert image.format == "PNG" and image.width > 400


def test_plot_command_draws_several_runs_on_one_figure(runs, tmp_path, capsys):
    out = tmp_path / "both.png"
    assert main(["plot", str(runs[0]), str(runs[1] / "metrics.jsonl"), "--out", str(out)]) == 0
    assert f"wrote the curves of 2 runs to {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_plot_command_names_a_folder_without_a_log(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl there" in capsys.readouterr().err


def test_without_matplotlib_a_run_says_so_in_one_line_and_plot_fails_in_one(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["train", *TINY, "--out-dir", str(tmp_path), "--name", "r"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed (pip install 'fastgan[plot]')" in err
    assert (tmp_path / "r" / "checkpoint.pt").exists() and not (tmp_path / "r" / "curves.png").exists()
    assert main(["plot", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_panels_group_losses_logits_other_numbers_and_evaluations():
    rows = [{"step": 2, "d_loss": 1.0, "g_loss": 2.0, "real_logit": 0.5, "fake_logit": -0.5, "r1": 0.1,
             "img_per_s": 100.0},
            {"step": 4, "d_loss": 0.5, "g_loss": 2.5, "real_logit": 1.0, "fake_logit": -1.0, "img_per_s": 90.0},
            {"step": 4, "eval": {"n": 64, "fid": 30.0, "kid": 2.0, "kid_std": 0.1}}]
    drawn = panels(rows)
    assert list(drawn) == ["losses (smoothed)", "mean logits", "r1", "eval: fid", "eval: kid"]
    assert drawn["losses (smoothed)"]["g_loss"] == ([2, 4], [2.0, 2.5])
    assert drawn["eval: fid"] == {"fid": ([4], [30.0])}


def test_smoothing_is_debiased_so_a_constant_stays_constant():
    assert smooth([3.0] * 5) == pytest.approx([3.0] * 5)
    assert smooth([0.0, 10.0], weight=0.5) == pytest.approx([0.0, 5.0 / 0.75])  # (0.5 * 0 + 0.5 * 10) / (1 - 0.5 ** 2)
