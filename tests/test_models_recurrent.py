"""RCGAN, VRAE and the sine-wave data: shapes, conditioning, one optimisation step, documented ranges."""
import numpy as np
import pytest
import torch

import fastgan as fg
from fastgan.data.sines import SINE_AMPLITUDE, sines, validate_sequences
from fastgan.models.recurrent import VRAE, RCGANDiscriminator, RCGANGenerator


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sines_have_the_documented_shape_dtype_and_ranges():
    x = sines(500, length=30, features=2, seed=0)
    assert x.shape == (500, 30, 2) and x.dtype == np.float32
    peak = np.abs(x).max(axis=1)  # about the amplitude: at least one cycle per sequence
    assert peak.max() <= SINE_AMPLITUDE[1] + 1e-6
    assert peak.min() >= SINE_AMPLITUDE[0] * 0.9
    assert peak.max() > 0.85 and peak.min() < 0.2  # the whole amplitude range is used
    np.testing.assert_array_equal(x, sines(500, length=30, features=2, seed=0))
    assert not np.array_equal(x, sines(500, length=30, features=2, seed=1))


def test_sine_frequencies_are_one_to_five_cycles_per_sequence():
    x = sines(300, length=200, features=1, seed=3)[:, :, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x, axis=1))
    cycles = spectrum.argmax(axis=1)  # bins are cycles per sequence
    assert cycles.min() >= 1 and cycles.max() <= 5
    assert set(cycles.tolist()) >= {1, 2, 3, 4}


def test_sine_phases_cover_minus_pi_to_pi():
    # x_1 / A = sin(2 pi f / T + phi): with T large, the first value's sign is the phase's.
    x = sines(2000, length=1000, features=1, seed=0)[:, 0, 0]
    assert (x > 0).mean() == pytest.approx(0.5, abs=0.05)


def test_sines_reject_bad_sizes():
    with pytest.raises(ValueError, match="length >= 1"):
        sines(4, length=0)


def test_validate_sequences_accepts_n_t_f_and_names_problems():
    out = validate_sequences(np.arange(24, dtype=np.int64).reshape(2, 3, 4))
    assert out.dtype == np.float32 and out.shape == (2, 3, 4) and out.flags.c_contiguous
    with pytest.raises(ValueError, match=r"shape \(N, T, F\)"):
        validate_sequences(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        validate_sequences(np.zeros((2, 0, 1)))
    with pytest.raises(ValueError, match="NaN"):
        validate_sequences(np.full((1, 2, 1), np.nan))
    with pytest.raises(ValueError, match="real numbers"):
        validate_sequences(np.array([[["a"]]]))


@pytest.mark.parametrize("per_step", [True, False])
def test_rcgan_shapes_and_one_step(per_step):
    torch.manual_seed(0)
    g = RCGANGenerator(features=2, noise_dim=3, hidden=8)
    d = RCGANDiscriminator(features=2, hidden=8, per_step=per_step)
    real = torch.from_numpy(sines(4, length=7, features=2))
    fake = g.sample(4, 7, torch.Generator().manual_seed(0))
    assert fake.shape == (4, 7, 2) and fake.abs().max() <= 1
    logits = d(real)
    assert logits.shape == ((4, 7) if per_step else (4,))
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)
    loss_d = fg.losses.d_loss(d(real).flatten(), d(fake.detach()).flatten())
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    before = [p.detach().clone() for p in g.parameters()]
    loss_g = fg.losses.g_loss(d(g.sample(4, 7)).flatten())
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    assert loss_d.isfinite() and loss_g.isfinite()
    assert all(not torch.equal(b, p) for b, p in zip(before, g.parameters()))


def test_per_sequence_logit_is_the_last_per_step_logit():
    torch.manual_seed(0)
    d = RCGANDiscriminator(features=1, hidden=8, per_step=True)
    x = torch.randn(3, 5, 1)
    per_step = d(x)
    d.per_step = False
    torch.testing.assert_close(d(x), per_step[:, -1])


def test_rcgan_generator_draws_noise_at_every_step():
    torch.manual_seed(0)
    g = RCGANGenerator(features=1, noise_dim=2, hidden=8, out_act="linear")
    z = torch.randn(1, 6, 2)
    z2 = z.clone()
    z2[:, 3] += 1.0
    a, b = g(z), g(z2)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # causal: earlier steps are untouched
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_rcgan_condition_is_used_and_checked():
    torch.manual_seed(0)
    g = RCGANGenerator(features=1, noise_dim=2, hidden=8, cond_dim=3)
    d = RCGANDiscriminator(features=1, hidden=8, cond_dim=3)
    z = torch.randn(2, 4, 2)
    c0, c1 = torch.zeros(2, 3), torch.ones(2, 3)
    assert not torch.allclose(g(z, c0), g(z, c1))
    assert d(g(z, c0), c0).shape == (2, 4)
    with pytest.raises(ValueError, match=r"condition of shape \(2, 3\)"):
        g(z)
    with pytest.raises(ValueError, match="cond_dim=0"):
        RCGANGenerator(noise_dim=2)(z, c0)
    with pytest.raises(ValueError, match=r"expected sequences \(N, T, 1\)"):
        d(torch.randn(2, 4, 5), c0)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vrae_shapes_and_one_step(likelihood):
    torch.manual_seed(0)
    vrae = VRAE(features=2, hidden=8, z_dim=3, likelihood=likelihood)
    x = torch.from_numpy(sines(4, length=6, features=2))
    if likelihood == "bernoulli":
        x = (x > 0).float()
    out, mu, logvar = vrae(x)
    assert out.shape == (4, 6, 2) and mu.shape == logvar.shape == (4, 3)
    terms = vrae.elbo_terms(x, torch.Generator().manual_seed(0))
    assert all(t.dim() == 0 and t.isfinite() for t in terms.values())
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"])
    opt = torch.optim.Adam(vrae.parameters(), 1e-2)
    opt.zero_grad()
    terms["loss"].backward()
    opt.step()
    assert vrae.sample(5, 9, torch.Generator().manual_seed(0)).shape == (5, 9, 2)


def test_vrae_decoder_starts_from_z():
    torch.manual_seed(0)
    vrae = VRAE(features=1, hidden=8, z_dim=2)
    z = torch.randn(2, 2)
    assert not torch.allclose(vrae.decode(z, 5)[0], vrae.decode(z, 5)[1])
    torch.testing.assert_close(vrae.decode(z, 5)[:, :3], vrae.decode(z, 3))



def test_timegan_sines_follow_timegans_data_loading():
    from fastgan.data import timegan_sines

    x = timegan_sines(2000, seed=0)
    assert x.shape == (2000, 24, 5) and x.dtype == np.float32
    assert x.min() >= 0.5 and x.max() <= 1.0  # (sin + 1) / 2 of arguments in [0, 2.5]
    # t = 0 gives sin(phi), phi ~ U(0, 0.1); the slope at t = 0 is about f cos(phi) / 2, f ~ U(0, 0.1).
    phase = np.arcsin(2 * x[:, 0].astype(np.float64) - 1)
    assert phase.min() >= 0 and phase.max() <= 0.1 and phase.max() > 0.099
    assert np.quantile(phase, 0.5) == pytest.approx(0.05, abs=0.005)
    np.testing.assert_array_equal(x, timegan_sines(2000, seed=0))
    with pytest.raises(ValueError, match="features >= 1"):
        timegan_sines(4, features=0)


def test_sines_timegan_is_a_built_in_sequence_dataset(tmp_path):
    from fastgan.data import dataset_kind
    from fastgan.train import TrainConfig, make_trainer

    assert dataset_kind("sines-timegan") == "sequences"
    small = dict(model="rgan", dataset="sines-timegan", seq_n=32, batch_size=8, progress=False, out_dir=str(tmp_path))
    trainer = make_trainer(TrainConfig(**small))
    assert trainer.data.array.shape == (32, 24, 5) and trainer.config.seq_len == 24
    with pytest.raises(ValueError, match="sines-timegan has TimeGAN's 5 features"):
        make_trainer(TrainConfig(**small, sines_features=2))


def test_rcgan_generator_with_sequence_noise_reads_one_vector_per_sequence():
    torch.manual_seed(0)
    g = RCGANGenerator(features=2, noise_dim=3, hidden=8, num_layers=2, out_act="sigmoid", noise="sequence")
    z = torch.randn(4, 7, 3)
    other_steps = z.clone()
    other_steps[:, 1:] = torch.randn(4, 6, 3)
    y = g(z)
    torch.testing.assert_close(g(other_steps), y)  # only the first step's noise is read
    torch.testing.assert_close(g(z[:, :1].expand(-1, 7, -1)), y)
    assert y.shape == (4, 7, 2) and 0 < y.min() and y.max() < 1  # sigmoid: data in [0, 1]
    with pytest.raises(ValueError, match="noise must be one of step, sequence"):
        RCGANGenerator(noise="once")


def test_vrae_sigmoid_mean_stays_in_the_unit_interval_and_enters_the_likelihood():
    torch.manual_seed(0)
    vrae = VRAE(features=2, hidden=8, z_dim=3, out_act="sigmoid")
    samples = vrae.sample(16, 5)
    assert samples.shape == (16, 5, 2) and 0 < samples.min() and samples.max() < 1
    x = torch.rand(4, 5, 2)
    output, _, _ = vrae(x)
    linear = VRAE(features=2, hidden=8, z_dim=3)
    # The gaussian NLL is of x under N(sigmoid(output), sigma^2), not under N(output, sigma^2).
    assert not torch.allclose(vrae.reconstruction_nll(x, output), linear.reconstruction_nll(x, output))
    torch.testing.assert_close(vrae.reconstruction_nll(x, output), linear.reconstruction_nll(x, torch.sigmoid(output)))
    with pytest.raises(ValueError, match="bernoulli likelihood's outputs are logits"):
        VRAE(likelihood="bernoulli", out_act="sigmoid")


def test_timegan_moment_loss_is_zero_for_equal_batches_and_measures_shift_and_spread():
    from fastgan.train.families.rgan import moment_loss

    x = torch.rand(64, 6, 3, generator=torch.Generator().manual_seed(0))
    assert moment_loss(x, x) == 0
    torch.testing.assert_close(moment_loss(x, x + 0.25), torch.tensor(0.25))
    spread = moment_loss(x, 2 * x)  # std doubles, mean doubles
    expected = (x.std(0, unbiased=False).mean() + x.mean(0).mean())
    torch.testing.assert_close(spread, expected, rtol=1e-4, atol=1e-5)
