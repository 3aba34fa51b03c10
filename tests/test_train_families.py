"""Training the other families through train(): VAE, VAE-GAN, recurrent GAN and VAE, SeqGAN."""
import json
import shutil

import numpy as np
import pytest
import torch
from state_compare import assert_same, logged_rows, resumable_state

from fastgan.cli import main
from fastgan.data import SequenceLoader, load_sequences, sines
from fastgan.train import TrainConfig, load_checkpoint, load_generator, make_trainer, train
from fastgan.train.samples import sequence_plots

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OUTPUTS = dict(progress=False, log_every=2, sample_every=1000, ckpt_every=1000, n_samples=9, batch_size=16, eval_n=64)
FAMILIES = {
    "vae": dict(model="vae", dataset="digits", resolution=16, vae_width=8, z_dim=8),
    "vaegan": dict(model="vaegan", dataset="digits", resolution=16, vae_width=8, z_dim=8),
    "rgan": dict(model="rgan", dataset="sines", seq_n=64, seq_len=12, seq_hidden=8, z_dim=3),
    "rvae": dict(model="rvae", dataset="sines", seq_n=64, seq_len=12, seq_hidden=8, z_dim=3),
    "seqgan": dict(model="seqgan", dataset="oracle", seq_n=64, seq_len=8, seq_hidden=8, seqgan_vocab=10,
                   seqgan_pretrain_steps=2, seqgan_d_pretrain_steps=2, seqgan_rollouts=2,
                   seqgan_nll_every=1),
}
LOGGED = {"vae": {"elbo", "recon", "kl"}, "vaegan": {"kl", "llike", "d_loss", "dec_loss"},
          "rgan": {"d_loss", "g_loss", "real_logit", "fake_logit"}, "rvae": {"elbo", "recon", "kl"},
          "seqgan": {"pg_loss", "reward", "d_loss", "real_prob", "fake_prob", "oracle_nll"}}


def config(tmp_path, family, **overrides) -> TrainConfig:
    return TrainConfig(out_dir=str(tmp_path), **{**OUTPUTS, **FAMILIES[family], **overrides})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 4-step run of each family, shared by the tests that only read runs."""
    out = tmp_path_factory.mktemp("runs")
    return {family: train(config(out, family, steps=4, name=family)) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_writes_samples_metrics_and_a_checkpoint(runs, family):
    run = runs[family]
    samples = run / ("samples.txt" if family == "seqgan" else "samples.png")
    assert samples.stat().st_size > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert LOGGED[family] <= set(rows[-1])
    assert all(np.isfinite(v) for v in rows[-1].values())
    assert load_checkpoint(run)["step"] == 4


@pytest.mark.parametrize("family, noise, shape", [
    ("vae", (5, 8), (5, 1, 16, 16)),
    ("vaegan", (5, 8), (5, 1, 16, 16)),
    ("rgan", (5, 12, 3), (5, 12, 1)),
    ("rvae", (5, 3), (5, 12, 1)),
])
def test_load_generator_maps_noise_to_samples(runs, family, noise, shape):
    sampler, cfg, step = load_generator(runs[family])
    assert step == 4 and not sampler.training
    assert cfg.seq_len == 12 if family in ("rgan", "rvae") else not hasattr(cfg, "seq_len")
    with torch.no_grad():
        out = sampler(torch.randn(noise))
    assert out.shape == shape and torch.isfinite(out).all()
    if family in ("vae", "vaegan"):
        assert out.min() >= -1 and out.max() <= 1


def test_seqgan_generator_loads_and_samples_tokens_of_the_run_length(runs):
    generator, cfg, _ = load_generator(runs["seqgan"])
    tokens = generator.sample(3, cfg.seq_len, torch.Generator().manual_seed(0))
    assert cfg.seq_len == 8 and tokens.shape == (3, 8) and 0 <= tokens.min() and tokens.max() < 10


def test_seqgan_samples_are_token_lines(runs):
    lines = (runs["seqgan"] / "samples.txt").read_text().splitlines()
    assert len(lines) == 9
    assert all(len(line.split()) == 8 and all(0 <= int(t) < 10 for t in line.split()) for line in lines)


@pytest.mark.parametrize("family, written", [
    ("vae", ["s.png"]), ("rgan", ["s.png", "s.npy"]), ("rvae", ["s.png", "s.npy"]), ("seqgan", ["s.txt"]),
])
def test_sample_command_writes_the_family_s_kind_of_output(runs, tmp_path, capsys, family, written):
    assert main(["sample", "--ckpt", str(runs[family]), "--n", "6", "--out", str(tmp_path / "s.png")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    assert f"wrote 6 samples of step 4 to {tmp_path / written[0]}" in capsys.readouterr().out
    if family in ("rgan", "rvae"):
        assert np.load(tmp_path / "s.npy").shape == (6, 12, 1)


def _elbo(vae, images: torch.Tensor) -> float:
    vae.eval()
    with torch.no_grad():
        terms = vae.elbo_terms(images, torch.Generator().manual_seed(0))
    vae.train()
    return -(terms["recon"] + terms["kl"]).item()


@pytest.mark.parametrize("family", FAMILIES)
def test_bench_times_each_family_s_step(family, capsys):
    options = [item for k, v in FAMILIES[family].items() for item in (f"--{k.replace('_', '-')}", str(v))]
    assert main(["bench", *options, "--batch-size", "16", "--no-progress", "--iters", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert f"model={family}" in out and "samples/s" in out


def test_vae_elbo_increases_on_digits(tmp_path):
    trainer = make_trainer(config(tmp_path, "vae", batch_size=32, lr_g=2e-3))
    batches = trainer.real_batches()
    held = next(batches)
    before = _elbo(trainer.vae, held)
    logged = [trainer.train_step(batches)["elbo"].item() for _ in range(40)]
    after = _elbo(trainer.vae, held)
    # 256 pixels of Bernoulli likelihood start near 256 * log 2 = 177 nats; 40 steps take off tens of nats.
    assert before < -150 and after > before + 30, (before, after)
    assert np.mean(logged[-5:]) > np.mean(logged[:5]) + 30


@pytest.mark.parametrize("family, extra", [
    ("vae", {}),
    ("vaegan", {}),
    ("rgan", {"n_critic": 2}),
    ("rvae", {}),
    # Stopped at step 2, the end of MLE pre-training: the resumed run starts with D pre-training.
    ("seqgan", {"seqgan_discriminator": "cnn", "n_critic": 2}),
])
def test_resume_is_bit_identical(tmp_path, family, extra):
    # 64 sequences (or 120 digits) in batches of 16: the runs cross epoch boundaries.
    full = train(config(tmp_path, family, steps=5, name="full", **extra))
    part = train(config(tmp_path, family, steps=2, name="part", **extra))
    resumed = train(config(tmp_path, family, steps=5, name="part", resume=True, **extra))
    assert resumed == part
    assert_same(resumable_state(full), resumable_state(resumed))
    assert logged_rows(resumed) == logged_rows(full)


def test_seqgan_logs_oracle_nll_through_pretraining_and_adversarial_steps(tmp_path):
    run = train(config(tmp_path, "seqgan", steps=4, log_every=1, name="s"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert ["mle_loss" in r for r in rows] == [True, True, False, False]
    assert ["pg_loss" in r for r in rows] == [False, False, True, True]
    assert all(r["oracle_nll"] > 0 for r in rows)


def test_seqgan_evaluation_reports_the_oracle_floor(tmp_path):
    trainer = make_trainer(config(tmp_path, "seqgan"))
    result = trainer.evaluate()
    assert result["oracle_nll_per_token"] == pytest.approx(result["oracle_nll"] / 8, rel=1e-6)
    # An untrained generator is far from the oracle's own sequences.
    assert 0 < result["data_oracle_nll"] < result["oracle_nll"]


def test_seqgan_takes_the_authors_settings_unless_given():
    cfg = TrainConfig(model="seqgan", dataset="oracle")
    assert (cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.clip_grad, cfg.batch_size) == (1e-2, 1e-4, 0.9, 5.0, 64)
    mine = TrainConfig(model="seqgan", dataset="oracle", lr_g=3e-3, clip_grad=1.0, batch_size=32)
    assert (mine.lr_g, mine.lr_d, mine.clip_grad, mine.batch_size) == (3e-3, 1e-4, 1.0, 32)
    # Other families keep the global defaults.
    gan = TrainConfig(model="dcgan")
    assert (gan.lr_g, gan.beta1, gan.clip_grad, gan.batch_size) == (2e-4, 0.5, 0.0, 64)


def test_seqgan_phases_have_their_own_generator_optimizers_and_the_rollout_trails_g(tmp_path):
    trainer = make_trainer(config(tmp_path, "seqgan", seqgan_pretrain_steps=1))
    batches = iter(trainer.real_batches())
    trainer.train_step(batches)  # MLE
    mle_state = trainer.optimizers["generator"].state_dict()["state"]
    assert mle_state and not trainer.optimizers["generator_adversarial"].state_dict()["state"]
    g_before = [p.clone() for p in trainer.generator.parameters()]
    trainer.train_step(batches)  # adversarial: the rollout starts as G, then moves 0.2 of the way to the new G
    assert trainer.optimizers["generator_adversarial"].state_dict()["state"]
    assert trainer.optimizers["generator"].state_dict()["state"][0]["step"] == 1
    for (name, r), old, new in zip(trainer.rollout.named_parameters(), g_before, trainer.generator.parameters()):
        want = new if name.startswith("embedding.") else 0.8 * old + 0.2 * new
        torch.testing.assert_close(r, want, rtol=1e-5, atol=1e-6)
    assert "rollout" in trainer.state_dict()["networks"]


def test_seqgan_oracle_depends_on_oracle_seed_not_the_run_seed(tmp_path):
    data = [make_trainer(config(tmp_path, "seqgan", **kw)).data.tokens for kw in
            (dict(seed=0), dict(seed=1), dict(seed=0, oracle_seed=1))]
    assert torch.equal(data[0], data[1]) and not torch.equal(data[0], data[2])


def test_clip_grad_bounds_the_global_gradient_norm_before_the_step(tmp_path):
    trainer = make_trainer(config(tmp_path, "seqgan", clip_grad=0.01))
    params = list(trainer.generator.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    trainer.clip_gradients("generator")
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])) == pytest.approx(0.01, rel=1e-4)
    off = make_trainer(config(tmp_path, "seqgan", clip_grad=0.0))
    for p in off.generator.parameters():
        p.grad = torch.ones_like(p)
    off.clip_gradients("generator")
    assert all((p.grad == 1).all() for p in off.generator.parameters())


def test_seqgan_paper_sized_cnn_discriminator(tmp_path):
    trainer = make_trainer(config(tmp_path, "seqgan", seqgan_discriminator="cnn-paper", seq_len=20))
    d = trainer.discriminator
    assert d.embedding.embedding_dim == 64 and d.l2_reg == 0.2
    assert sum(c.out_channels for c in d.convs) == 1720
    assert trainer.train_step(iter(trainer.real_batches()))["mle_loss"] > 0


def test_rgan_evaluation_reports_sequence_distances(tmp_path):
    trainer = make_trainer(config(tmp_path, "rgan"))
    result = trainer.evaluate()
    assert set(result) == {"n", "fid", "kid", "kid_std", "freq_w1", "amp_w1", "sine_r2"}
    assert result["fid"] > 0 and 0 <= result["sine_r2"] <= 1


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_vaegan_steps_every_network_under_mixed_precision(tmp_path, amp):
    trainer = make_trainer(config(tmp_path, "vaegan", amp=amp))
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in trainer.networks.items()}
    batches = trainer.real_batches()
    # fp16's loss scales start at 2^16 and halve at each overflow (skipping that update): 8 steps get past it.
    for _ in range(8):
        stats = trainer.train_step(batches)
    assert all(torch.isfinite(v) for v in stats.values())
    for name, net in trainer.networks.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name


def test_vae_beta_weighs_the_vaegan_encoders_prior_term(tmp_path):
    # Same seed, same batches: only the encoder's loss changes, by (beta - 1) * KL.
    steps = {beta: make_trainer(config(tmp_path, "vaegan", vae_beta=beta, name=f"b{beta}")) for beta in (1.0, 4.0)}
    first = {beta: trainer.train_step(trainer.real_batches()) for beta, trainer in steps.items()}
    assert torch.equal(first[1.0]["kl"], first[4.0]["kl"]) and torch.equal(first[1.0]["llike"], first[4.0]["llike"])
    encoders = {beta: [p.detach() for p in t.networks["encoder"].parameters()] for beta, t in steps.items()}
    decoders = {beta: [p.detach() for p in t.networks["decoder"].parameters()] for beta, t in steps.items()}
    assert any(not torch.equal(a, b) for a, b in zip(encoders[1.0], encoders[4.0]))
    assert all(torch.equal(a, b) for a, b in zip(decoders[1.0], decoders[4.0]))


def test_user_npy_sequences_train_rvae_and_record_their_length(tmp_path):
    data = np.random.default_rng(0).uniform(0, 1, size=(40, 7, 2)).astype(np.float32)
    np.save(tmp_path / "seq.npy", data)
    run = train(config(tmp_path, "rvae", dataset=str(tmp_path / "seq.npy"), seq_len=0, vae_likelihood="bernoulli",
                       steps=2, name="npy"))
    sampler, cfg, _ = load_generator(run)
    assert cfg.seq_len == 7
    values = sampler(torch.randn(3, 3))
    assert values.shape == (3, 7, 2) and 0 <= values.min() and values.max() <= 1


def test_rgan_tanh_output_rejects_data_beyond_one(tmp_path):
    np.save(tmp_path / "big.npy", np.full((32, 5, 1), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"values reach 3.*--rgan-out-act linear"):
        make_trainer(config(tmp_path, "rgan", dataset=str(tmp_path / "big.npy"), seq_len=0))
    trainer = make_trainer(config(tmp_path, "rgan", dataset=str(tmp_path / "big.npy"), seq_len=0,
                                  rgan_out_act="linear"))
    assert trainer.data_shape == (5, 1)


def test_npy_length_must_match_seq_len(tmp_path):
    np.save(tmp_path / "seq.npy", np.zeros((32, 5, 1), np.float32))
    with pytest.raises(ValueError, match="have 5 time steps but seq_len is 12"):
        make_trainer(config(tmp_path, "rgan", dataset=str(tmp_path / "seq.npy")))


@pytest.mark.parametrize("overrides, message", [
    (dict(model="rgan"), r"holds images, which model rgan does not train on \(it trains on sequences\); models for images: dcgan, resnet, r3gan, mlp, vae, vaegan"),
    (dict(model="rvae", dataset="oracle"), r"holds tokens, which model rvae does not train on \(it trains on sequences\)"),
    (dict(model="seqgan", dataset="sines"), r"holds sequences, which model seqgan does not train on \(it trains on tokens\)"),
    (dict(model="dcgan", dataset="sines"), "holds sequences, which model dcgan does not train on"),
    (dict(model="vae", dataset="ring8"), r"holds points, which model vae does not train on \(it trains on images\)"),
    (dict(model="vae", n_critic=2), "n_critic: must be 1 for model vae"),
    (dict(model="vae", d_loss="hinge"), "d_loss: must be bce for model vae: it has no discriminator"),
    (dict(model="vaegan", g_loss="hinge"), "g_loss: must be ns or saturating"),
    (dict(model="seqgan", dataset="oracle", d_loss="lsgan"), "d_loss: must be bce for model seqgan"),
    (dict(model="rgan", dataset="sines", hflip=True), "hflip: flips images"),
    (dict(model="vae", compile=True), "compile: is an option of dcgan, resnet, r3gan, mlp, not of model vae"),
    (dict(model="rgan", dataset="sines", r1_gamma=1.0), "r1_gamma: is a setting of dcgan, resnet, mlp, not of model rgan"),
    (dict(dataset="cifar"), "dataset: unknown dataset 'cifar': use a built-in one"),
    (dict(model="gan"), "model: must be one of dcgan, resnet, r3gan, mlp, vae, vaegan, rgan, rvae, timegan, seqgan"),
    (dict(model="vae", vae_likelihood="poisson"), "vae_likelihood: must be one of auto, bernoulli, gaussian"),
    (dict(model="seqgan", dataset="oracle", seqgan_discriminator="gru"), "seqgan_discriminator: must be one of lstm, cnn"),
    (dict(model="rvae", dataset="sines", vae_sigma=0.0), "vae_sigma: must be > 0"),
    (dict(model="rgan", dataset="sines", seq_len=-1), "seq_len: must be >= 0"),
    (dict(model="seqgan", dataset="oracle", seqgan_vocab=1), "seqgan_vocab: must be >= 2"),
    (dict(seqgan_vocab=5000), "seqgan_vocab: is a setting of seqgan, not of model dcgan"),
    (dict(model="mlp", g_width=64), "g_width: is a setting of dcgan, resnet, not of model mlp"),
    (dict(g_loss="rpgan"), "g_loss: must be ns or saturating or hinge or lsgan or wgan for model dcgan"),
    (dict(model="rgan", dataset="sines", g_loss="rpgan"), "g_loss: must be ns or .* for model rgan"),
])
def test_config_rejects_mismatched_models_data_and_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


def test_sequence_loader_shuffles_per_epoch_shards_by_rank_and_resumes_by_batch_count():
    data = np.arange(40, dtype=np.int64).reshape(20, 2)
    one = SequenceLoader(data, 4, seed=3)
    epoch0 = torch.cat(list(one.epoch(0)))[:, 0] // 2
    assert len(one) == 5 and sorted(epoch0.tolist()) == list(range(20))
    assert not torch.equal(epoch0, torch.cat(list(one.epoch(1)))[:, 0] // 2)
    # Two ranks read the rows of one global batch between them, each row once.
    ranks = [SequenceLoader(data, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    shards = [torch.cat(list(loader.epoch(0)))[:, 0] // 2 for loader in ranks]
    assert sorted(torch.cat(shards).tolist()) == list(range(20))
    stream = one.batches(0)
    first = [next(stream) for _ in range(12)]
    resumed = one.batches(7)
    for expected in first[7:]:
        assert torch.equal(next(resumed), expected)


def test_sequence_data_errors_name_the_problem(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"shape \(N, T, F\)"):
        load_sequences(tmp_path / "flat.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric .npy"):
        load_sequences(tmp_path / "objects.npy")
    with pytest.raises(FileNotFoundError, match="no such sequence file"):
        load_sequences(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="fewer than one global batch"):
        SequenceLoader(np.zeros((3, 5, 1), np.float32), 4)


def test_sequence_plots_draw_one_panel_per_sequence():
    image = sequence_plots(torch.from_numpy(sines(6, 30, features=2)), ncol=3, panel=(100, 50))
    assert image.size == (3 * 104 + 4, 2 * 54 + 4)
    pixels = np.asarray(image)
    assert (pixels != 255).any(axis=2).mean() > 0.02  # lines were drawn
    with pytest.raises(ValueError, match=r"expected sequences \(N, T, F\)"):
        sequence_plots(torch.zeros(4, 30))


@pytest.mark.parametrize("family", ["rgan", "rvae", "seqgan"])
def test_eval_of_a_sequence_run_scores_the_checkpoint_as_training_did(tmp_path, family):
    from fastgan.train.evaluate import evaluate_checkpoint

    run = train(config(tmp_path, family, steps=4, eval_every=4, eval_n=48, name=family))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    during_training = [row["eval"] for row in logged if "eval" in row]
    assert len(during_training) == 1 and during_training[0]["n"] == 48
    seed = TrainConfig.from_dict(load_checkpoint(run)["config"]).seed
    result = evaluate_checkpoint(run, n=48, seed=seed)
    assert result.pop("step") == 4
    # The run's own seed and n reproduce, from the checkpoint, what --eval-every wrote to metrics.jsonl.
    assert result == during_training[0]
    other_seed = evaluate_checkpoint(run, n=48, seed=seed + 1)
    assert other_seed["step"] == 4 and other_seed != {"step": 4, **result}
    with pytest.raises(ValueError, match=f"a {family} run is scored with its own metrics"):
        evaluate_checkpoint(run, ["fid"], n=48)
    with pytest.raises(ValueError, match="--dataset applies to image and point runs"):
        evaluate_checkpoint(run, n=48, dataset="digits")


def test_eval_of_a_sequence_run_says_when_the_training_set_caps_n(runs, tmp_path, capsys):
    run = shutil.copytree(runs["rgan"], tmp_path / "rgan")  # eval appends to metrics.jsonl: keep the shared run as is
    main(["eval", "--ckpt", str(run), "--n", "100"])  # the run has 64 training sequences
    assert "n        64 (the run's training set has 64 sequences)" in capsys.readouterr().out
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["eval"]["n"] == 64
