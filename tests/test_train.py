"""The trainer: learning, AMP, compile, EMA, reproducibility, resume and checkpoints."""
import json

import pytest
import torch
from state_compare import assert_same

import fastgan.train.base as base_module
from fastgan.train.base import EagerFallbackWarning
from fastgan.train import CheckpointError, TrainConfig, Trainer, load_checkpoint, load_generator, train

SMALL = dict(dataset="digits", resolution=16, model="dcgan", g_width=8, d_width=8, z_dim=16, batch_size=16,
             progress=False, log_every=5, sample_every=1000, ckpt_every=1000, n_samples=16)


def small(tmp_path, **overrides) -> TrainConfig:
    settings = {**SMALL, **overrides}
    if settings["model"] == "mlp":  # its widths are mlp_hidden
        del settings["g_width"], settings["d_width"]
    return TrainConfig(out_dir=str(tmp_path), **settings)


def _d_error(trainer: Trainer, real: torch.Tensor) -> float:
    """Share of misclassified samples (real logit <= 0, fake logit >= 0) on one real and one fake batch."""
    d, g = trainer.discriminator, trainer.generator
    with torch.no_grad():
        z = torch.randn(len(real), trainer.config.z_dim, generator=torch.Generator().manual_seed(5))
        return 0.5 * ((d(real) <= 0).float().mean() + (d(g(z)) >= 0).float().mean()).item()


def test_short_training_lowers_d_error_on_real_vs_fake(tmp_path):
    trainer = Trainer(small(tmp_path, batch_size=64, lr_g=1e-5))
    batches = trainer.real_batches()
    real = next(batches)
    before = _d_error(trainer, real)
    for _ in range(30):
        trainer.train_step(batches)
    after = _d_error(trainer, real)
    assert before > 0.3 and after < 0.1, (before, after)


def test_run_writes_samples_metrics_and_checkpoint(tmp_path):
    run = train(small(tmp_path, steps=10, name="r"))
    assert run == tmp_path / "r"
    assert (run / "samples.png").stat().st_size > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    assert {"d_loss", "g_loss", "real_logit", "fake_logit", "img_per_s"} <= set(rows[0])
    state = load_checkpoint(run)  # weights_only=True inside
    assert state["step"] == 10 and state["config"]["steps"] == 10
    generator, config, step = load_generator(run)
    assert step == 10 and not generator.training
    assert generator(torch.randn(2, config.z_dim)).shape == (2, 1, 16, 16)


def test_unnamed_runs_get_fresh_directories(tmp_path):
    first = train(small(tmp_path, steps=1))
    second = train(small(tmp_path, steps=1))
    assert first.name == "digits-dcgan" and second.name == "digits-dcgan-1"


def test_named_run_is_not_overwritten(tmp_path):
    train(small(tmp_path, steps=1, name="x"))
    with pytest.raises(FileExistsError, match="--resume"):
        train(small(tmp_path, steps=1, name="x"))


def _params(run):
    state = load_checkpoint(run)
    return {k: state[k] for k in ("networks", "ema", "optimizers", "scalers")}


def test_seeded_runs_are_bit_identical(tmp_path):
    a = train(small(tmp_path, steps=6, name="a"))
    b = train(small(tmp_path, steps=6, name="b"))
    assert_same(_params(a), _params(b))


@pytest.mark.parametrize("extra", [{}, {"n_critic": 2, "r1_gamma": 1.0, "r1_every": 2}])
def test_resume_is_bit_identical(tmp_path, extra):
    # 120 images / 16 per batch: 7 batches an epoch, so the resumed run crosses epoch boundaries.
    full = train(small(tmp_path, steps=12, name="full", **extra))
    part = train(small(tmp_path, steps=5, name="part", **extra))
    resumed = train(small(tmp_path, steps=12, name="part", resume=True, **extra))
    assert resumed == part
    assert_same(_params(full), _params(resumed))
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 12]


def test_resume_keeps_the_saved_output_settings_unless_given(tmp_path):
    train(small(tmp_path, steps=4, name="r", log_every=2, ckpt_every=2))
    resumed = train(TrainConfig(out_dir=str(tmp_path), name="r", resume=True, steps=8, progress=False))
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]
    saved = json.loads((resumed / "config.json").read_text())
    assert (saved["log_every"], saved["ckpt_every"], saved["steps"]) == (2, 2, 8)


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run to resume"):
        train(small(tmp_path, steps=1, name="ghost", resume=True))
    (tmp_path / "ghost").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing to resume: the run wrote no checkpoint"):
        train(small(tmp_path, steps=1, name="ghost", resume=True))


def test_corrupted_checkpoint_gives_a_clear_error(tmp_path):
    run = train(small(tmp_path, steps=2, name="c"))
    ckpt = run / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.pt: not a readable checkpoint"):
        load_checkpoint(ckpt)
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(ckpt)
    torch.save({"weights": torch.zeros(1)}, ckpt)
    with pytest.raises(CheckpointError, match="not a fastgan checkpoint"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, amp):
    trainer = Trainer(small(tmp_path, amp=amp))
    batches = trainer.real_batches()
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    for _ in range(3):
        stats = trainer.train_step(batches)
    assert all(torch.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())


@pytest.mark.slow
def test_compiled_training_runs_and_matches_eager(tmp_path, monkeypatch):
    # Compiled on the CPU too here, where --compile otherwise trains eagerly (it does not pay there).
    monkeypatch.setattr(base_module, "COMPILE_PAYS_ON", ("cuda", "cpu"))
    eager = Trainer(small(tmp_path, g_width=4, d_width=4))
    compiled = Trainer(small(tmp_path, g_width=4, d_width=4, compile=True))
    b1, b2 = eager.real_batches(), compiled.real_batches()
    for _ in range(3):
        s1, s2 = eager.train_step(b1), compiled.train_step(b2)
    torch.testing.assert_close(s1["d_loss"], s2["d_loss"], rtol=1e-4, atol=1e-5)
    for p1, p2 in zip(eager.generator.parameters(), compiled.generator.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-5)
    assert compiled.g_fwd is not compiled.generator


def test_compile_trains_eagerly_where_it_does_not_pay_and_says_so(tmp_path):
    with pytest.warns(EagerFallbackWarning) as caught:
        trainer = Trainer(small(tmp_path, g_width=4, d_width=4, compile=True))
    assert trainer.g_fwd is trainer.generator and trainer.d_fwd is trainer.discriminator
    notices = [str(w.message) for w in caught if w.category is EagerFallbackWarning]
    assert len(notices) == 1 and notices[0].startswith("--compile: torch.compile does not speed up training on cpu")


def test_ema_tracks_the_generator(tmp_path):
    trainer = Trainer(small(tmp_path, ema_decay=0.5))
    batches = trainer.real_batches()
    # The decay ramps up as (1 + t) / (10 + t): 0.1, 0.18, ... until it reaches ema_decay.
    for decay in (0.1, 2 / 11, 0.25, 4 / 13, 5 / 14, 0.4, 7 / 16, 8 / 17, 0.5, 0.5):
        ema_before = [p.clone() for p in trainer.ema.module.parameters()]
        trainer.train_step(batches)
        for e0, e1, g in zip(ema_before, trainer.ema.module.parameters(), trainer.generator.parameters()):
            torch.testing.assert_close(e1, decay * e0 + (1 - decay) * g.detach())


@pytest.mark.parametrize("dataset", ["ring8", "grid25"])
def test_toy_datasets_train_an_mlp_gan(tmp_path, dataset):
    run = train(small(tmp_path, dataset=dataset, model="mlp", mlp_hidden=(32, 32), steps=5, name=dataset))
    generator, config, _ = load_generator(run)
    assert generator(torch.randn(4, config.z_dim)).shape == (4, 2)
    assert (run / "samples.png").exists()


def test_wgan_gp_step_reports_the_penalty(tmp_path):
    trainer = Trainer(small(tmp_path, d_loss="wgan", g_loss="wgan", gp_weight=10.0, n_critic=2))
    stats = trainer.train_step(trainer.real_batches())
    assert stats["gp"] >= 0 and torch.isfinite(stats["d_loss"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model="stylegan"), "model: must be one of"),
        (dict(d_loss="kl"), "d_loss: must be one of"),
        (dict(amp="fp8"), "amp: must be one of bf16, fp16 or none"),
        (dict(batch_size=0), "batch_size: must be >= 1"),
        (dict(seed=-1), r"seed: must be between 0 and 2\*\*63 - 1"),
        (dict(label_smoothing=0.1, d_loss="hinge"), "applies to d_loss=bce only"),
        # Types, read from the field annotations, for the Python API as for TOML (issue 18, items 4 and 9).
        (dict(steps="abc"), "TrainConfig.steps: must be a whole number; got 'abc'"),
        (dict(steps=1.5), "TrainConfig.steps: must be a whole number; got 1.5"),
        (dict(steps=True), "TrainConfig.steps: must be a whole number; got True"),
        (dict(model="mlp", mlp_hidden=5), "TrainConfig.mlp_hidden: must be a list of whole numbers; got 5"),
        (dict(lr_g="fast"), "TrainConfig.lr_g: must be a number; got 'fast'"),
        (dict(dataset=5), "TrainConfig.dataset: must be a string; got 5"),
        (dict(compile="yes"), "TrainConfig.compile: must be true or false"),
        (dict(r1_gamma=float("nan")), "TrainConfig.r1_gamma: must be a finite number; got nan"),
        (dict(lr_d=float("inf")), "TrainConfig.lr_d: must be a finite number; got inf"),
        (dict(seed=1e20), "TrainConfig.seed: must be a whole number; got 1e"),
        (dict(seed=10**20), r"TrainConfig.seed: must be between 0 and 2\*\*63 - 1"),
        (dict(device="bogus"), "TrainConfig.device: device 'bogus' is not a torch device; use cpu, cuda or cuda:N"),
        (dict(device="tpu"), "TrainConfig.device: device 'tpu' is not a torch device"),
        (dict(device="meta"), "TrainConfig.device: device 'meta': fastgan trains on cpu or cuda devices"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides)


def test_config_takes_whole_numbers_for_floats_and_lists_for_tuples():
    config = TrainConfig(lr_g=1, model="mlp", mlp_hidden=[8, 4])
    assert type(config.lr_g) is float and config.lr_g == 1.0 and config.mlp_hidden == (8, 4)


def test_points_dataset_needs_the_mlp_model(tmp_path):
    with pytest.raises(ValueError, match="models for points: mlp"):
        Trainer(small(tmp_path, dataset="ring8", model="dcgan"))


@pytest.mark.parametrize("option", [
    dict(spectral_norm=True), dict(mbstd=True), dict(pac=2), dict(diffaug="color,translation,cutout"),
    dict(instance_noise=0.1), dict(spectral_norm=True, r1_gamma=1.0, r1_every=1),
])
def test_stability_options_reach_the_discriminator_and_train(tmp_path, option):
    trainer = Trainer(small(tmp_path, **option))
    d = trainer.discriminator
    if option.get("spectral_norm"):
        assert any(hasattr(m, "parametrizations") for m in d.modules())
    if option.get("pac"):
        assert d(torch.zeros(16, 1, 16, 16)).shape == (8,)
    if option.get("mbstd"):
        assert any(type(m).__name__ == "MinibatchStd" for m in d.modules())
    batches = trainer.real_batches()
    before = [p.detach().clone() for p in d.parameters()]
    stats = trainer.train_step(batches)
    assert all(torch.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters()))


def test_augmented_packed_runs_resume_bit_identically(tmp_path):
    # (Instance noise is left out: it anneals over `steps`, which this resume changes.)
    extra = dict(diffaug="color,translation,cutout", pac=2, mbstd=True)
    full = train(small(tmp_path, steps=6, name="full", **extra))
    train(small(tmp_path, steps=3, name="part", **extra))
    resumed = train(small(tmp_path, steps=6, name="part", resume=True, **extra))
    assert_same(_params(full), _params(resumed))


def test_instance_noise_is_annealed_to_zero(tmp_path):
    from fastgan.nn import instance_noise_std

    assert instance_noise_std(0, 100, 0.2) == pytest.approx(0.2)
    assert instance_noise_std(50, 100, 0.2) == pytest.approx(0.1)
    assert instance_noise_std(100, 100, 0.2) == 0.0


@pytest.mark.parametrize("overrides, message", [
    (dict(pac=3), "pac: must divide batch_size"),
    (dict(diffaug="color,flip"), "diffaug: policies are comma-separated names"),
])
def test_stability_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(batch_size=16, **overrides)
