"""--init-from: a new run that starts from another run's checkpoint and trains on under its own settings."""
import shutil

import pytest
from state_compare import assert_same, logged_rows, resumable_state

from fastgan.cli import main
from fastgan.train import TrainConfig, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEQGAN = dict(model="seqgan", dataset="oracle", seq_n=64, seq_len=8, seq_hidden=8, seqgan_vocab=10,
              seqgan_rollouts=2, seqgan_nll_every=1, progress=False, log_every=1, sample_every=1000,
              ckpt_every=1000, n_samples=4, batch_size=16, eval_n=64)
ADVERSARIAL = dict(seqgan_pretrain_steps=3, seqgan_d_pretrain_steps=2, n_critic=2, lr_d=3e-4)


def config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path), **{**SEQGAN, **overrides})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Three maximum-likelihood steps of SeqGAN: the shared pre-training the adversarial settings branch from."""
    out = tmp_path_factory.mktemp("pre")
    return train(config(out, name="mle", steps=3, seqgan_pretrain_steps=3))


def test_a_branch_is_the_run_that_had_those_settings_from_the_start(tmp_path, pretrained):
    branch = train(config(tmp_path, name="branch", steps=5, init_from=str(pretrained), **ADVERSARIAL))
    whole = train(config(tmp_path, name="whole", steps=5, **ADVERSARIAL))
    assert_same(resumable_state(branch), resumable_state(whole))
    # The branch trained steps 4 and 5 alone, and logged what the uninterrupted run logged for them.
    rows = logged_rows(branch)
    assert [row["step"] for row in rows] == [4, 5]
    assert rows == [row for row in logged_rows(whole) if row["step"] > 3]


def test_the_new_runs_learning_rates_replace_the_checkpoints(tmp_path, pretrained):
    run = train(config(tmp_path, name="lr", steps=4, init_from=str(pretrained), lr_g=5e-3, **ADVERSARIAL))
    groups = {name: opt["param_groups"][0]["lr"] for name, opt in load_checkpoint(run)["optimizers"].items()}
    assert groups == {"generator": 5e-3, "generator_adversarial": 5e-3, "discriminator": 3e-4}
    assert load_checkpoint(pretrained)["optimizers"]["generator"]["param_groups"][0]["lr"] == 1e-2


@pytest.mark.parametrize("argv, message", [
    (["--steps", "3"], "that run is at step 3, so --steps 3 leaves nothing to train: pass --steps above 3"),
    (["--steps", "5", "--seq-hidden", "4"], "its networks do not fit this run's settings (Error(s) in loading "
                                            "state_dict for SeqGANGenerator:"),
    (["--steps", "5", "--seq-len", "6"], "--init-from {source}: checkpoint was trained on data of shape [8], this "
                                         "run has [6]"),
    (["--steps", "5", "--resume"], "--init-from cannot be combined with --resume"),
])
def test_a_branch_that_cannot_start_is_a_one_line_error(tmp_path, pretrained, capsys, argv, message):
    base = ["train", "--model", "seqgan", "--dataset", "oracle", "--seq-n", "64", "--seq-len", "8",
            "--seq-hidden", "8", "--seqgan-vocab", "10", "--batch-size", "16", "--no-progress",
            "--out-dir", str(tmp_path), "--name", "b", "--init-from", str(pretrained)]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message.format(source=pretrained) in err, err
    assert not (tmp_path / "b").exists()


def test_another_model_is_refused_by_name(tmp_path, pretrained, capsys):
    assert main(["train", "--model", "mlp", "--dataset", "ring8", "--steps", "5", "--no-progress",
                 "--out-dir", str(tmp_path), "--name", "m", "--init-from", str(pretrained)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("that run trained --model seqgan, this one --model mlp; start from a mlp run"), err


def test_a_missing_source_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--steps", "2", "--no-progress", "--out-dir", str(tmp_path), "--name", "x",
                 "--init-from", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nowhere" in err, err


def test_a_branch_resumes_from_its_own_checkpoint_without_its_source(tmp_path, pretrained):
    source = tmp_path / "source"
    shutil.copytree(pretrained, source)
    train(config(tmp_path, name="branch", steps=4, init_from=str(source), **ADVERSARIAL))
    shutil.rmtree(source)
    resumed = train(TrainConfig(out_dir=str(tmp_path), name="branch", steps=5, resume=True, progress=False))
    whole = train(config(tmp_path, name="whole", steps=5, **ADVERSARIAL))
    assert_same(resumable_state(resumed), resumable_state(whole))
