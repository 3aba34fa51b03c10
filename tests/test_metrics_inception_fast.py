"""InceptionV3's inference network (BatchNorm folded into the convolutions, channels_last) against its reference.

The reference is pytorch-fid's network as it runs there (reference_features_and_logits). The fast network must
give the same features to float32 rounding: on torch's default initialisation (as bench.fid runs it) a relative
difference <= 1e-6 (largest difference over the largest feature, and per sample in the 2-norm); on weights whose
features vary from image to image as a trained network's do, where float32 itself is ~1e-6 off float64, no
further from the float64 result than the reference is; and the same FID to the 4th digit.
"""
import copy
import math

import pytest
import torch

import fastgan.metrics.inception as inception
from fastgan.metrics import FeatureStats, InceptionV3, frechet_distance
from fastgan.metrics.inception import BasicConv2d, FoldedConv2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REL = 1e-6


def calibrated_inception(seed: int) -> InceptionV3:
    """Random weights with BatchNorm statistics measured on a batch of images, as a trained network's are.

    He-normal convolutions, then one training-mode pass over 8 random images with momentum 1 sets each
    running mean and variance to that batch's, and random affine parameters go on top: the features
    vary from image to image as a trained network's do (with the default initialisation they are almost
    constant and FIDs come out ~1e-3), and folding changes every weight and bias.
    """
    torch.manual_seed(seed)
    net = InceptionV3(load_weights=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, math.sqrt(2 / m.weight[0].numel()))
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0
        net.train()
        net.reference_features_and_logits(torch.rand(8, 3, 16, 16) * 2 - 1)
        net.eval()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.1
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return net


def default_inception(seed: int) -> InceptionV3:
    """torch's default initialisation, BatchNorm statistics and affine parameters drawn away from the identity."""
    torch.manual_seed(seed)
    net = InceptionV3(load_weights=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.25, 4)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return net


@pytest.fixture(scope="module")
def net():
    return default_inception(0)


@pytest.fixture(scope="module")
def calibrated():
    return calibrated_inception(0)


def assert_features_close(fast, ref, rel=REL):
    fast, ref = fast.double(), ref.double()
    assert fast.shape == ref.shape
    assert (fast - ref).abs().max() <= rel * ref.abs().max()
    assert ((fast - ref).norm(dim=1) <= rel * ref.norm(dim=1)).all()


def both(net, images):
    with torch.no_grad():
        return net.features_and_logits(images), net.reference_features_and_logits(images)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 16, 16), (3, 3, 8, 8), (2, 3, 64, 48)])
def test_fast_features_and_logits_equal_the_reference(net, shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    (features, logits), (ref_features, ref_logits) = both(net, images)
    assert ref_features.abs().max() > 0.1  # the weights keep the features away from zero
    assert_features_close(features, ref_features)
    assert_features_close(logits, ref_logits)


def test_fast_features_are_as_close_to_float64_as_the_reference(calibrated):
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(10)) * 2 - 1
    (features, logits), (ref_features, ref_logits) = both(calibrated, images)
    net64 = copy.deepcopy(calibrated).double()
    with torch.no_grad():
        exact_features, exact_logits = net64.features_and_logits(images.double())
    assert exact_features.std(0).mean() > 0.03 * exact_features.mean()  # features that tell images apart
    for fast, ref, exact in ((features, ref_features, exact_features), (logits, ref_logits, exact_logits)):
        ref_error = (ref.double() - exact).abs().max() / exact.abs().max()
        assert 1e-8 < ref_error < 1e-5  # float32's own error through 94 layers
        assert (fast.double() - exact).abs().max() / exact.abs().max() <= 1.5 * ref_error


def test_fast_path_takes_non_contiguous_and_channels_last_images(net):
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ref = both(net, images)[1][0]
    strided = torch.zeros(2, 3, 24, 48)
    strided[..., ::2] = images
    for variant in (images.contiguous(memory_format=torch.channels_last),
                    images.transpose(2, 3).contiguous().transpose(2, 3), strided[..., ::2]):
        assert torch.equal(variant, images)
        assert_features_close(both(net, variant)[0][0], ref)


def test_fast_path_extreme_nan_and_empty_inputs(net):
    big = torch.full((1, 3, 16, 16), 1e4)
    big[..., ::2, :] = -1e4
    (features, _), (ref, _) = both(net, big)
    assert torch.isfinite(ref).all()
    assert_features_close(features, ref)
    nan = torch.rand(2, 3, 16, 16) * 2 - 1
    nan[1, 0, 3, 3] = float("nan")
    features = both(net, nan)[0][0]
    assert torch.isnan(features[1]).any() and not torch.isnan(features[0]).any()
    (features, logits), (ref, ref_logits) = both(net, torch.zeros(0, 3, 16, 16))
    assert features.shape == ref.shape == (0, 2048) and logits.shape == (0, 1008)


def test_fast_network_is_the_folded_copy_and_follows_weight_changes():
    net = default_inception(3)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        net(images)
    folded = inception._FOLDED[net][1]
    assert not any(isinstance(m, BasicConv2d) for m in folded.modules())
    assert sum(isinstance(m, FoldedConv2d) for m in folded.modules()) == 94
    assert folded.Conv2d_4a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)
    # A new state (load_state_dict copies in place) and an in-place edit each give a new folded copy.
    net.load_state_dict(default_inception(5).state_dict())
    assert_features_close(both(net, images)[0][0], both(net, images)[1][0])
    with torch.no_grad():
        net.Mixed_7c.branch_pool.bn.running_mean.add_(1.0)
    (features, _), (ref, _) = both(net, images)
    assert_features_close(features, ref)
    assert inception._FOLDED[net][1] is not folded


def test_training_mode_gradients_and_float64_take_the_reference():
    net = default_inception(6)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    # Gradient wanted: the reference runs, bit for bit, and the gradient reaches the weights.
    features = net(images.requires_grad_())
    assert torch.equal(features, net.reference_features_and_logits(images)[0])
    features.sum().backward()
    assert images.grad is not None and net.Conv2d_1a_3x3.conv.weight.grad is not None
    assert net not in inception._FOLDED
    # float64 (oneDNN has no float64 convolution) and eval-mode copies on other dtypes.
    net64 = default_inception(6).double()
    with torch.no_grad():
        assert torch.equal(net64(images.double()), net64.reference_features_and_logits(images.double())[0])
    assert net64 not in inception._FOLDED
    # Training mode: BatchNorm uses batch statistics, which the folded copy does not have.
    net.train()
    with torch.no_grad():
        assert torch.equal(net(images), net.reference_features_and_logits(images)[0])
    assert net not in inception._FOLDED


def test_a_state_dict_saved_from_the_fast_network_has_no_folded_keys(net):
    with torch.no_grad():
        net(torch.zeros(1, 3, 8, 8))
    assert sorted(net.state_dict()) == sorted(InceptionV3(load_weights=False).state_dict())


@pytest.mark.slow
def test_fid_of_a_fixed_sample_is_unchanged_in_the_4th_digit(calibrated):
    # FID over the first 8 feature dimensions (two sets of 20 images: a full 2048-d covariance needs
    # more than 2,048 images per set): noise against smoother noise, so the distance is far from zero.
    gen = torch.Generator().manual_seed(8)
    real = torch.rand(20, 3, 16, 16, generator=gen) * 2 - 1
    fake = torch.nn.functional.interpolate(torch.rand(20, 3, 4, 4, generator=gen) * 2 - 1, size=16, mode="bilinear")
    values = []
    for run in ("features_and_logits", "reference_features_and_logits"):
        with torch.no_grad():
            a, b = (getattr(calibrated, run)(x)[0][:, :8] for x in (real, fake))
        s, t = FeatureStats.from_features(a), FeatureStats.from_features(b)
        values.append(frechet_distance(s.mean, s.cov, t.mean, t.cov))
    fast, ref = values
    assert ref > 1
    assert abs(fast - ref) <= 1e-5 * ref  # the 4th digit moves at 5e-4 relative at the earliest


def test_features_equal_pytorch_fid_on_the_same_weights(net, monkeypatch):
    pfi = pytest.importorskip("pytorch_fid.inception")
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *args, **kwargs: net.state_dict())
    theirs = pfi.InceptionV3([3]).eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    with torch.no_grad():
        expected = theirs((images + 1) / 2)[0].flatten(1)  # pytorch-fid takes [0, 1] and maps it to [-1, 1]
        assert_features_close(net(images), expected)
