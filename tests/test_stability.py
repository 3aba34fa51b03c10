"""GAN stability toolkit: spectral norm, minibatch std, PacGAN, DiffAugment, instance noise."""
import copy
import math

import pytest
import torch

import fastgan as fg
from fastgan.models import DCGANDiscriminator, MLPDiscriminator
from fastgan.nn import MinibatchStd, apply_spectral_norm, diff_augment, instance_noise, instance_noise_std, pack

WEIGHTED_LAYERS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)


def _tiny_dcgan_d(**options):
    return DCGANDiscriminator(resolution=16, channels=1, width=4, **options)


def _tiny_mlp_d(**options):
    return MLPDiscriminator(in_shape=(1, 4, 4), hidden=(16, 16), **options)


def _weights(module):
    return [layer for layer in module.modules() if isinstance(layer, WEIGHTED_LAYERS)]


def _spectral_norms(module):
    """Largest singular value of each weight as spectral_norm reshapes it (output channels as rows)."""
    norms = []
    for layer in _weights(module):
        w = layer.weight.detach()
        if isinstance(layer, torch.nn.ConvTranspose2d):
            w = w.transpose(0, 1)
        norms.append(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item())
    return norms


def _run_power_iterations(module, count):
    """Each training-mode read of a spectrally normalised weight runs one more power iteration."""
    module.train()
    with torch.no_grad():
        for _ in range(count):
            for layer in _weights(module):
                _ = layer.weight  # reading a parametrized weight runs a power iteration
    module.eval()


# ---------------------------------------------------------------- spectral norm

@pytest.mark.parametrize("make_d, x_shape", [(_tiny_dcgan_d, (4, 1, 16, 16)), (_tiny_mlp_d, (4, 1, 4, 4))])
def test_spectral_norm_bounds_every_weight_near_one(make_d, x_shape):
    torch.manual_seed(0)
    d = make_d(spectral_norm=True)
    x = torch.randn(x_shape)
    with torch.no_grad():
        for _ in range(5):
            d(x)
    d.eval()
    norms = _spectral_norms(d)
    assert len(norms) == 3
    # Power iteration underestimates the top singular value, so the normalised weight approaches 1
    # from above, at a rate set by each random matrix's gap sigma_2 / sigma_1 (up to 1.03 after 5 passes).
    assert all(1 - 1e-5 <= s <= 1.05 for s in norms), norms
    _run_power_iterations(d, 150)
    assert all(abs(s - 1) < 2e-4 for s in _spectral_norms(d)), _spectral_norms(d)


def test_apply_spectral_norm_wraps_conv_transpose_and_is_idempotent():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 5, 4), torch.nn.Conv2d(5, 2, 3), torch.nn.Linear(4, 3))
    assert apply_spectral_norm(net) is net
    keys = sorted(net.state_dict())
    apply_spectral_norm(net)
    assert sorted(net.state_dict()) == keys
    assert all(torch.nn.utils.parametrize.is_parametrized(layer, "weight") for layer in net)
    _run_power_iterations(net, 200)
    assert all(abs(s - 1) < 1e-4 for s in _spectral_norms(net)), _spectral_norms(net)


def test_spectral_norm_dcgan_discriminator_drops_batch_norm():
    assert any(isinstance(m, fg.nn.BatchNormAct) for m in _tiny_dcgan_d().modules())
    assert not any(isinstance(m, fg.nn.BatchNormAct) for m in _tiny_dcgan_d(spectral_norm=True).modules())


@pytest.mark.parametrize("make_d, x_shape", [(_tiny_dcgan_d, (4, 1, 16, 16)), (_tiny_mlp_d, (4, 1, 4, 4))])
def test_spectral_norm_d_step_on_real_and_fake_then_backward(make_d, x_shape):
    torch.manual_seed(0)
    d = make_d(spectral_norm=True, mbstd=True, pac=2)
    real, fake = torch.randn(x_shape), torch.randn(x_shape)
    loss = fg.losses.d_loss(d(real), d(fake), kind="hinge")
    loss.backward()
    grads = [p.grad for p in d.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("make_d, x_shape", [(_tiny_dcgan_d, (4, 1, 16, 16)), (_tiny_mlp_d, (4, 1, 4, 4))])
def test_r1_double_backward_through_spectral_norm(make_d, x_shape):
    torch.manual_seed(0)
    d = make_d(spectral_norm=True, mbstd=True)
    real = torch.randn(x_shape, requires_grad=True)
    (grad_real,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    grad_real.square().sum().backward()
    grads = [p.grad for p in d.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_r1_second_derivatives_through_spectral_norm_mbstd_and_pac_are_correct():
    # Eval mode freezes the power-iteration vectors, so D is a fixed function the checker can probe.
    # The MLP D, because fastgan's bias_act backward (in the DCGAN D) rounds float64 to float32.
    torch.manual_seed(0)
    d = MLPDiscriminator(in_shape=(2, 2), hidden=(6, 5), spectral_norm=True, mbstd=True, pac=2).double().eval()
    names = [name for name, _ in d.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in d.parameters())
    x = torch.randn(8, 2, 2, dtype=torch.float64, requires_grad=True)

    def logits(x, *params):
        return torch.func.functional_call(d, dict(zip(names, params)), (x,))

    assert torch.autograd.gradgradcheck(logits, (x, *params))


# ---------------------------------------------------------------- PacGAN

def test_pack_concatenates_consecutive_samples_along_channels():
    x = torch.randn(6, 3, 5, 5)
    packed = pack(x, 3)
    assert packed.shape == (2, 9, 5, 5)
    torch.testing.assert_close(packed[1], torch.cat([x[3], x[4], x[5]]), rtol=0, atol=0)
    assert pack(torch.randn(6, 7), 2).shape == (3, 14)
    assert torch.equal(pack(x, 1), x)


def test_pack_rejects_a_batch_not_divisible_by_pac():
    with pytest.raises(ValueError, match=r"N=5 is not divisible by pac=2"):
        pack(torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match="pac must be a positive integer"):
        pack(torch.randn(4, 3), 0)


@pytest.mark.parametrize("pac", [1, 2, 4])
def test_pacgan_widens_d_input_and_divides_its_output_count(pac):
    dcgan_d, mlp_d = _tiny_dcgan_d(pac=pac), _tiny_mlp_d(pac=pac)
    first_conv = next(m for m in dcgan_d.modules() if isinstance(m, torch.nn.Conv2d))
    first_linear = next(m for m in mlp_d.modules() if isinstance(m, torch.nn.Linear))
    assert first_conv.in_channels == pac * 1
    assert first_linear.in_features == pac * 16
    assert dcgan_d(torch.randn(8, 1, 16, 16)).shape == (8 // pac,)
    assert mlp_d(torch.randn(8, 1, 4, 4)).shape == (8 // pac,)
    if pac > 1:
        with pytest.raises(ValueError, match=f"N=9 is not divisible by pac={pac}"):
            dcgan_d(torch.randn(9, 1, 16, 16))


@pytest.mark.parametrize("pac_fresh, packs, samples", [(False, 2, 6), (True, 6, 18)])
def test_pac_fresh_gives_d_batch_size_packs_of_pac_fresh_samples(tmp_path, pac_fresh, packs, samples):
    from fastgan.train import TrainConfig, Trainer

    config = TrainConfig(out_dir=str(tmp_path), dataset="ring8", model="mlp", mlp_hidden=(8,), batch_size=6, pac=3,
                         pac_fresh=pac_fresh, progress=False)
    trainer = Trainer(config)
    seen = []
    trainer.discriminator.register_forward_hook(lambda m, args, out: seen.append((args[0].shape[0], out.shape[0])))
    trainer.train_step(iter(trainer.real_batches()))
    assert seen[0] == (samples, packs) and seen[1] == (samples, packs)  # real, then fake: packs of 3 samples
    assert trainer.batches_seen == samples // 6 and trainer.samples_per_step() == samples


def test_pac_fresh_lifts_the_divisibility_rule():
    from fastgan.train import TrainConfig

    with pytest.raises(ValueError, match=r"pac: must divide batch_size \(10\)"):
        TrainConfig(dataset="ring8", model="mlp", batch_size=10, pac=3)
    assert TrainConfig(dataset="ring8", model="mlp", batch_size=10, pac=3, pac_fresh=True).pac == 3


# ---------------------------------------------------------------- minibatch standard deviation

def _minibatch_std_by_loops(x, group_size, num_channels):
    """StyleGAN2's formula written out: sample i is in group i mod (N / G)."""
    n, c = x.shape[:2]
    groups = n // group_size
    out = torch.empty(n, num_channels, *x.shape[2:], dtype=x.dtype)
    for j in range(groups):
        members = x[j::groups]
        for f in range(num_channels):
            block = members[:, f * (c // num_channels):(f + 1) * (c // num_channels)]
            std = (block.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            out[j::groups, f] = std
    return torch.cat([x, out], dim=1)


@pytest.mark.parametrize("n, group_size, expected_group", [(8, 4, 4), (6, 4, 3), (7, 4, 1), (2, 4, 2), (12, 8, 6)])
@pytest.mark.parametrize("num_channels", [1, 2])
def test_minibatch_std_matches_the_direct_formula(n, group_size, expected_group, num_channels):
    torch.manual_seed(0)
    layer = MinibatchStd(group_size, num_channels)
    assert layer.group_size_for(n) == expected_group
    x = torch.randn(n, 6, 3, 5, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (n, 6 + num_channels, 3, 5)
    torch.testing.assert_close(y, _minibatch_std_by_loops(x, expected_group, num_channels), rtol=1e-12, atol=0)


def test_minibatch_std_on_flat_features():
    torch.manual_seed(0)
    x = torch.randn(8, 10, dtype=torch.float64)
    y = MinibatchStd(4)(x)
    assert y.shape == (8, 11)
    expected = _minibatch_std_by_loops(x[:, :, None, None], 4, 1)[:, :, 0, 0]
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_minibatch_std_is_zero_up_to_its_epsilon_for_identical_samples(dtype):
    x = torch.randn(1, 4, 3, 3).repeat(8, 1, 1, 1).to(dtype).requires_grad_()
    y = MinibatchStd(4)(x)
    assert y.dtype == dtype
    # sqrt(0 + 1e-8): the epsilon keeps the gradient finite when G collapses to one sample.
    torch.testing.assert_close(y[:, 4:].float(), torch.full((8, 1, 3, 3), 1e-4), rtol=1e-2, atol=0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_minibatch_std_rejects_channels_that_do_not_split():
    with pytest.raises(ValueError, match="5 channels do not split into num_channels=2"):
        MinibatchStd(4, 2)(torch.randn(4, 5, 2, 2))


def test_mbstd_discriminators_widen_their_last_layer_by_one():
    dcgan_last = [m for m in _tiny_dcgan_d(mbstd=True).modules() if isinstance(m, torch.nn.Conv2d)][-1]
    mlp_last = [m for m in _tiny_mlp_d(mbstd=True).modules() if isinstance(m, torch.nn.Linear)][-1]
    assert dcgan_last.in_channels == 4 * 2 + 1  # 16 px: widths 4, 8
    assert mlp_last.in_features == 16 + 1


# ---------------------------------------------------------------- DiffAugment

def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_diff_augment_with_empty_policy_is_the_identity():
    x = torch.randn(2, 3, 8, 8)
    assert diff_augment(x, "") is x
    assert diff_augment(x, " , ") is x


def test_diff_augment_rejects_unknown_policy_and_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown policy 'flip'; choose from color, translation, cutout"):
        diff_augment(torch.randn(2, 3, 8, 8), "color,flip")
    with pytest.raises(ValueError, match="unknown policy"):
        fg.nn.DiffAugment("colour")
    with pytest.raises(ValueError, match="NCHW"):
        diff_augment(torch.randn(3, 8, 8), "color")


def test_diff_augment_is_deterministic_given_the_generator_seed():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    before = x.clone()
    a = diff_augment(x, generator=_generator(7))
    b = fg.nn.DiffAugment()(x, generator=_generator(7))
    c = diff_augment(x, generator=_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, before)  # the input is never written


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_gradient_is_exact(policy):
    torch.manual_seed(0)
    x = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_()
    # A freshly seeded generator per call fixes the random draws, so the checker sees one function.
    assert torch.autograd.gradcheck(lambda x: diff_augment(x, policy, _generator(3)), (x,))


def test_diff_augment_color_follows_the_formula():
    x = torch.rand(5, 3, 4, 4, dtype=torch.float64) * 2 - 1
    draws = _generator(1)
    brightness, saturation, contrast = (torch.rand(5, 1, 1, 1, generator=draws, dtype=torch.float64)
                                        for _ in range(3))
    y = x + brightness - 0.5
    y = (y - y.mean(1, keepdim=True)) * (2 * saturation) + y.mean(1, keepdim=True)
    y = (y - y.mean((1, 2, 3), keepdim=True)) * (contrast + 0.5) + y.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(diff_augment(x, "color", _generator(1)), y, rtol=1e-14, atol=1e-14)


def test_diff_augment_translation_moves_the_image_and_fills_with_zeros():
    n, size, max_shift = 64, 16, 2  # 16 / 8
    pattern = torch.zeros(size, size)
    pattern[5:11, 5:11] = torch.arange(36.0).view(6, 6) + 1  # its largest value sits at (10, 10)
    x = torch.stack([pattern, torch.ones(size, size)]).expand(n, 2, size, size)
    y = diff_augment(x, "translation", _generator(0))
    shifts = set()
    for image in y:
        row, col = divmod(image[0].argmax().item(), size)
        dy, dx = row - 10, col - 10
        assert abs(dy) <= max_shift and abs(dx) <= max_shift
        shifts.add((dy, dx))
        torch.testing.assert_close(image[0], pattern.roll((dy, dx), (0, 1)), rtol=0, atol=0)
        inside = torch.zeros(size, size)
        inside[max(dy, 0):size + min(dy, 0), max(dx, 0):size + min(dx, 0)] = 1
        torch.testing.assert_close(image[1], inside, rtol=0, atol=0)
    assert {dy for dy, _ in shifts} == {dx for _, dx in shifts} == set(range(-max_shift, max_shift + 1))


def test_diff_augment_cutout_zeroes_one_half_size_square_clipped_at_the_border():
    n, size, side = 64, 16, 8
    y = diff_augment(torch.ones(n, 3, size, size), "cutout", _generator(0))
    full_squares = 0
    for image in y:
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        cut = image[0] == 0
        rows, cols = cut.any(1).nonzero().flatten(), cut.any(0).nonzero().flatten()
        # One axis-aligned rectangle: every cut row is cut in the same columns.
        assert cut.sum() == len(rows) * len(cols)
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))
        assert torch.equal(cols, torch.arange(cols[0], cols[-1] + 1))
        # The centre stays inside the image, so at least half of each side is visible.
        assert side // 2 <= len(rows) <= side and side // 2 <= len(cols) <= side
        assert len(rows) == side or rows[0] == 0 or rows[-1] == size - 1
        assert len(cols) == side or cols[0] == 0 or cols[-1] == size - 1
        full_squares += len(rows) == len(cols) == side
    assert 0 < full_squares < n


# ---------------------------------------------------------------- instance noise

def test_instance_noise_has_the_requested_std():
    n, std = 2 ** 18, 0.3
    x = torch.linspace(-1, 1, n).view(2 ** 10, 2 ** 8)
    noise = instance_noise(x, std, _generator(0)) - x
    # Standard errors: std / sqrt(n) for the mean, std / sqrt(2n) for the std (0.14% of it); allow 5 of each.
    assert abs(noise.mean().item()) < 5 * std / math.sqrt(n)
    assert abs(noise.std().item() - std) < 5 * std / math.sqrt(2 * n)
    assert torch.equal(instance_noise(x, std, _generator(0)), instance_noise(x, std, _generator(0)))


def test_instance_noise_of_zero_std_returns_the_input():
    x = torch.randn(3, 4)
    assert instance_noise(x, 0.0) is x
    with pytest.raises(ValueError, match="std must be >= 0"):
        instance_noise(x, -0.1)


def test_instance_noise_std_anneals_linearly_to_zero():
    assert [instance_noise_std(step, 100, 0.2) for step in (0, 25, 50, 100, 150)] == pytest.approx(
        [0.2, 0.15, 0.1, 0.0, 0.0], abs=1e-15)
    with pytest.raises(ValueError, match="total_steps must be positive"):
        instance_noise_std(0, 0, 0.1)


# ---------------------------------------------------------------- torch.compile

def test_compiled_d_with_spectral_norm_mbstd_and_pac_matches_eager():
    torch.manual_seed(0)
    eager = _tiny_dcgan_d(spectral_norm=True, mbstd=True, pac=2)
    twin = copy.deepcopy(eager)
    # fullgraph=True turns any graph break into an error.
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    x = torch.randn(8, 1, 16, 16)
    x_eager, x_compiled = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(2):  # the second call reuses the graph with the power-iteration buffers already updated
        y_eager, y_compiled = eager(x_eager), compiled(x_compiled)
        torch.testing.assert_close(y_compiled, y_eager, rtol=1e-6, atol=1e-7)
        y_eager.square().sum().backward()
        y_compiled.square().sum().backward()
    assert y_eager.shape == (4,)
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, rtol=1e-6, atol=1e-7)
    for (name, p), q in zip(eager.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=name)
    for (name, b), c in zip(eager.named_buffers(), twin.buffers()):
        torch.testing.assert_close(c, b, rtol=1e-6, atol=1e-7, msg=name)
