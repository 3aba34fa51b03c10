"""The timegan family (Yoon et al. 2019): its networks, its three phases, resume, the command line, bad input."""
import contextlib
import json

import numpy as np
import pytest
import torch
from state_compare import assert_same, logged_rows, resumable_state

from fastgan.cli import main
from fastgan.models import TimeGAN
from fastgan.train import TrainConfig, load_checkpoint, load_generator, make_trainer, train
from fastgan.train.checkpoint import CheckpointError
from fastgan.train.families import timegan as timegan_family

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 64 sequences of 8 steps and 5 features in batches of 16: runs cross epoch boundaries.
SMALL = dict(model="timegan", dataset="sines-timegan", seq_n=64, seq_len=8, seq_hidden=8, batch_size=16,
             progress=False, log_every=1, sample_every=1000, ckpt_every=1000, n_samples=4, eval_n=32)
NETWORKS = ("embedder", "recovery", "generator", "supervisor", "discriminator")


def config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path), **{**SMALL, "steps": 6, "timegan_embed_steps": 2,
                                                 "timegan_supervised_steps": 2, **overrides})


def _weights(trainer) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in getattr(trainer.model, name).parameters()] for name in NETWORKS}


def _changed(before, after) -> set[str]:
    return {name for name in NETWORKS if any(not torch.equal(a, b) for a, b in zip(before[name], after[name]))}


def test_networks_map_sequences_latents_and_noise_to_the_right_shapes():
    model = TimeGAN(features=5, noise_dim=3, hidden=8, num_layers=3)
    x, z = torch.rand(4, 10, 5), torch.randn(4, 10, 3)
    h = model.embed(x)
    assert h.shape == (4, 10, 8) and 0 < h.min() and h.max() < 1  # sigmoid latents
    assert model.recovery(h).shape == (4, 10, 5)
    assert model.latent_noise(z).shape == (4, 10, 8)
    assert model.supervisor(h).shape == (4, 10, 8)
    assert model.discriminator(h).shape == (4, 10, 1)  # a logit per step
    assert model(z).shape == (4, 10, 5)
    assert model.supervisor.gru.num_layers == 2 and model.embedder.gru.num_layers == 3


def test_gru_gate_biases_start_at_one_as_in_tensorflow():
    gru = TimeGAN(features=2, noise_dim=2, hidden=4, num_layers=2).generator.gru
    assert torch.equal(gru.bias_ih_l1, torch.tensor([1.0] * 8 + [0.0] * 4))
    assert torch.equal(gru.bias_hh_l0, torch.zeros(12))


def test_scaling_maps_each_feature_into_unit_range_and_samples_back_into_the_data_s():
    data = torch.stack([torch.linspace(-3, 5, 60), torch.linspace(10, 11, 60)], dim=1).reshape(6, 10, 2)
    model = TimeGAN(features=2, noise_dim=2, hidden=4, num_layers=2)
    model.fit_scaling(data)
    scaled = model.scale_in(data)
    assert scaled.amin(dim=(0, 1)).tolist() == [0.0, 0.0]
    assert torch.allclose(scaled.amax(dim=(0, 1)), torch.ones(2), rtol=0, atol=1e-6)
    assert torch.allclose(model.scale_out(scaled), data, rtol=0, atol=1e-5)
    samples = model(torch.randn(16, 10, 2))  # the recovery's sigmoid keeps samples inside the data's range
    assert (samples[..., 0] > -3).all() and (samples[..., 0] < 5).all()
    assert (samples[..., 1] > 10).all() and (samples[..., 1] < 11).all()


@pytest.mark.parametrize("bad, message", [
    (lambda m: m.embed(torch.rand(2, 5)), r"expected sequences \(N, T, 5\); got shape \(2, 5\)"),
    (lambda m: m.scale_in(torch.rand(2, 4, 3)), r"expected sequences \(N, T, 5\); got shape \(2, 4, 3\)"),
    (lambda m: m(torch.randn(2, 4, 5)), r"expected noise \(N, T, 3\); got shape \(2, 4, 5\)"),
    (lambda m: TimeGAN(5, 3, num_layers=1), r"num_layers must be >= 2"),
])
def test_bad_shapes_and_sizes_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        bad(TimeGAN(features=5, noise_dim=3, hidden=8, num_layers=3))


def test_each_phase_trains_only_its_networks_and_its_loss_falls(tmp_path):
    # A learning rate 10 times the authors' shows the fall within 25 steps.
    trainer = make_trainer(config(tmp_path, steps=60, timegan_embed_steps=25, timegan_supervised_steps=25, lr_g=1e-2))
    batches = trainer.real_batches()
    before = _weights(trainer)
    embedding = [trainer.train_step(batches)["e_loss"].item() for _ in range(25)]
    after_embedding = _weights(trainer)
    supervised = [trainer.train_step(batches)["s_loss"].item() for _ in range(25)]
    after_supervised = _weights(trainer)
    stats = trainer.train_step(batches)
    assert trainer.phase() == "joint"
    assert _changed(before, after_embedding) == {"embedder", "recovery"}
    assert _changed(after_embedding, after_supervised) == {"supervisor"}
    # A joint step updates all five (D too while its loss is above 0.15, as it is at first).
    assert stats["d_updated"].item() == 1.0
    assert _changed(after_supervised, _weights(trainer)) == set(NETWORKS)
    assert np.mean(embedding[-5:]) < 0.8 * np.mean(embedding[:5]), embedding  # 0.28 -> 0.20 here
    assert np.mean(supervised[-5:]) < 0.5 * np.mean(supervised[:5]), supervised  # 0.17 -> 0.05
    assert all(np.isfinite(float(v)) for v in stats.values())


def test_discriminator_is_left_alone_while_its_loss_is_below_the_threshold(tmp_path, monkeypatch):
    trainer = make_trainer(config(tmp_path, timegan_embed_steps=0, timegan_supervised_steps=0))
    monkeypatch.setattr(timegan_family, "D_LOSS_THRESHOLD", 1e9)
    before = _weights(trainer)
    stats = trainer.train_step(trainer.real_batches())
    assert stats["d_updated"].item() == 0.0
    assert _changed(before, _weights(trainer)) == {"embedder", "recovery", "generator", "supervisor"}


def test_generator_loss_reaches_generator_and_supervisor_only(tmp_path):
    trainer = make_trainer(config(tmp_path, timegan_embed_steps=0, timegan_supervised_steps=0))
    trainer.train_step(trainer.real_batches())
    optimizers = trainer.optimizers
    model = trainer.model

    def owners(name):
        ids = {id(p) for group in optimizers[name].param_groups for p in group["params"]}
        return {part for part in NETWORKS if any(id(p) in ids for p in getattr(model, part).parameters())}

    assert owners("embedding") == owners("autoencoder") == {"embedder", "recovery"}
    assert owners("supervised") == {"supervisor"}
    assert owners("generator") == {"generator", "supervisor"}
    assert owners("discriminator") == {"discriminator"}
    # Five Adam states, as the authors' five solvers: the joint phase does not inherit the pre-training's moments.
    assert optimizers["embedding"] is not optimizers["autoencoder"]


@pytest.mark.parametrize("stop", [1, 3, 5])  # in the embedding, the supervised and the joint phase
def test_resume_is_bit_identical_from_every_phase(tmp_path, stop):
    full = train(config(tmp_path, steps=7, name="full"))
    # A run stopped in pre-training is warned about (no joint steps), and may be resumed.
    with pytest.warns(UserWarning, match="leave none") if stop < 5 else contextlib.nullcontext():
        part = train(config(tmp_path, steps=stop, name="part"))
    assert load_checkpoint(part)["timegan_phase"] == ("embedding", "supervised", "joint")[stop // 2]
    resumed = train(config(tmp_path, steps=7, name="part", resume=True))
    assert_same(resumable_state(full, ["timegan_phase"]), resumable_state(resumed, ["timegan_phase"]))
    assert logged_rows(resumed) == logged_rows(full)
    assert {"d_loss", "g_loss_u", "g_loss_s", "g_loss_v", "e_loss", "d_updated"} <= set(logged_rows(full)[-1])


def test_a_checkpoint_whose_phase_disagrees_with_its_step_is_refused(tmp_path):
    trainer = make_trainer(config(tmp_path))
    state = trainer.state_dict()
    assert state["timegan_phase"] == "embedding"
    state["timegan_phase"] = "joint"
    with pytest.raises(CheckpointError, match="records timegan phase 'joint'.*put that step in 'embedding'"):
        make_trainer(config(tmp_path)).load_state_dict(state)


def test_train_sample_and_eval_from_the_command_line(tmp_path, capsys):
    options = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items() if k != "progress"]
    assert main(["train", *options, "--no-progress", "--steps", "5", "--timegan-embed-steps", "2",
                 "--timegan-supervised-steps", "1", "--out-dir", str(tmp_path), "--name", "t"]) == 0
    run = tmp_path / "t"
    assert main(["sample", "--ckpt", str(run), "--n", "6", "--out", str(tmp_path / "s.png")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (6, 8, 5) and samples.min() >= 0 and samples.max() <= 1
    sampler, cfg, step = load_generator(run)
    assert step == 5 and cfg.model == "timegan" and cfg.seq_len == 8
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run), "--n", "64"]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and "kid" in out
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["eval"]["n"] == 64


def test_takes_the_authors_settings_unless_given():
    cfg = TrainConfig(model="timegan", dataset="sines-timegan")
    assert (cfg.batch_size, cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.seq_hidden, cfg.z_dim, cfg.ema_decay,
            cfg.timegan_layers) == (128, 1e-3, 1e-3, 0.9, 24, 5, 0.0, 3)
    assert cfg.timegan_embed_steps + cfg.timegan_supervised_steps < cfg.steps
    assert TrainConfig(model="timegan", dataset="sines-timegan", seq_hidden=16).seq_hidden == 16


@pytest.mark.parametrize("overrides, message", [
    (dict(dataset="digits"), "holds images, which model timegan does not train on"),
    (dict(n_critic=2), "n_critic: must be 1 for model timegan"),
    (dict(d_loss="hinge"), "d_loss: must be bce for model timegan"),
    (dict(timegan_embed_steps=-1), "timegan_embed_steps: must be >= 0"),
])
def test_config_rejects_what_timegan_cannot_do(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_pretraining_that_leaves_no_joint_steps_is_warned_about(tmp_path):
    with pytest.warns(UserWarning, match=r"\(6\) leave none of --steps \(5\) for joint training: the run ends in "
                                         r"its supervised phase"):
        make_trainer(config(tmp_path, steps=5, timegan_embed_steps=3, timegan_supervised_steps=3))
    with pytest.raises(ValueError, match="num_layers must be >= 2"):
        make_trainer(config(tmp_path, timegan_layers=1))


def test_image_data_is_a_one_line_error_on_the_command_line(tmp_path, capsys):
    assert main(["train", "--model", "timegan", "--dataset", "digits", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model timegan does not train on" in err and "Traceback" not in err
