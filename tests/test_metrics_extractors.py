import numpy as np
import pytest
import torch

from fastgan.metrics import DigitsClassifier, InceptionV3, InceptionWeightsNotFound, digits_classifier, fid
from fastgan.metrics.digits_classifier import heldout_split, to_unit_range


def test_inception_architecture_gives_pool_features_and_logits():
    torch.manual_seed(0)
    net = InceptionV3(load_weights=False)
    # torchvision documents 27,161,264 parameters for Inception3 with its aux head (3,326,696) and 1000
    # classes; without the aux head and with 1008 classes that is 23,850,960.
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049
    with torch.no_grad():
        features, logits = net.features_and_logits(torch.rand(2, 3, 32, 32) * 2 - 1)
        grey = net(torch.rand(2, 1, 16, 16))
    assert features.shape == (2, 2048) and logits.shape == (2, 1008) and grey.shape == (2, 2048)
    assert torch.isfinite(features).all() and (features >= 0).all()  # post-ReLU average


def test_inception_state_dict_round_trips_through_a_weights_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = InceptionV3(load_weights=False)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.setenv("FASTGAN_INCEPTION_WEIGHTS", str(path))
    loaded = InceptionV3()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a pt_inception-2015-12-05"):
        InceptionV3(weights=tmp_path / "other.pth")


def test_missing_inception_weights_explain_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(InceptionWeightsNotFound, match="FASTGAN_INCEPTION_WEIGHTS.*|pt_inception-2015-12-05") as info:
        InceptionV3()
    message = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "https://" in message and "never downloads" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        InceptionV3(weights=tmp_path / "nope.pth")


def test_extractor_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        DigitsClassifier()(torch.zeros(2, 3, 16, 16))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FASTGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield digits_classifier(16)
    mp.undo()


@pytest.mark.slow
def test_digits_classifier_is_accurate_on_held_out_digits(classifier):
    from fastgan.data.builtin import digits

    images, labels = digits(16)
    _, test_idx = heldout_split(len(labels))
    with torch.no_grad():
        pred = classifier.features_and_logits(to_unit_range(images[test_idx]))[1].argmax(1)
    accuracy = float((pred.numpy() == labels[test_idx]).mean())
    assert accuracy > 0.95
    assert accuracy == pytest.approx(classifier.heldout_accuracy)


@pytest.mark.slow
def test_digits_classifier_is_cached_and_reloaded(classifier, tmp_path_factory):
    from fastgan.metrics.cache import cache_dir

    assert len(list(cache_dir().glob("digits_classifier-digits-r16-v*.pt"))) == 1
    reloaded = digits_classifier(16)
    assert reloaded.heldout_accuracy == classifier.heldout_accuracy
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), reloaded.state_dict().values()))


@pytest.mark.slow
def test_digits_fid_separates_real_from_noise(classifier):
    from fastgan.data.builtin import digits

    images = to_unit_range(digits(16)[0])
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(images)))
    half_a, half_b = images[order[:800]], images[order[800:1600]]
    noise = torch.rand(800, 1, 16, 16) * 2 - 1
    same = fid(half_a, half_b, classifier)
    different = fid(half_a, noise, classifier)
    assert 0 <= same < different / 20


def _nchw_features_and_logits(net, images):
    """The classifier's layers in NCHW, as training runs them: the oracle of the channels_last inference path."""
    features = net.body(images.contiguous())
    return features, net.head(features)


@pytest.mark.parametrize("shape", [(7, 1, 16, 16), (3, 1, 8, 8), (2, 1, 32, 32), (0, 1, 16, 16)])
def test_digits_classifier_inference_equals_its_nchw_layers(shape):
    torch.manual_seed(0)
    net = DigitsClassifier().eval()
    images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        features, logits = net.features_and_logits(images)
        ref_features, ref_logits = _nchw_features_and_logits(
            net, torch.nn.functional.interpolate(images, size=(16, 16), mode="bilinear", antialias=True)
            if shape[-1] != 16 else images)
    assert features.shape == ref_features.shape and logits.shape == ref_logits.shape
    if shape[0]:
        assert features.is_contiguous() and (features - ref_features).abs().max() <= 1e-6 * ref_features.abs().max()
        assert (logits - ref_logits).abs().max() <= 1e-6 * ref_logits.abs().max()


def test_digits_classifier_trains_in_nchw_and_gives_nan_for_nan():
    torch.manual_seed(0)
    net = DigitsClassifier().train()
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    features, _ = net.features_and_logits(images)
    assert torch.equal(features, net.body(images))  # bit for bit: retraining gives the cached weights
    images[2, 0, 5, 5] = float("nan")
    with torch.no_grad():
        features, logits = net.eval().features_and_logits(images)
    assert torch.isnan(logits[2]).all() and not torch.isnan(logits[[0, 1, 3]]).any()


@pytest.mark.slow
def test_digits_fid_of_a_fixed_sample_is_unchanged_by_the_channels_last_path(classifier):
    from fastgan.data.builtin import digits

    images = to_unit_range(digits(16)[0])
    fake = torch.tanh(torch.randn(800, 1, 16, 16, generator=torch.Generator().manual_seed(0)) + images[:800])
    with torch.no_grad():
        fast = fid(classifier.features_and_logits(images[800:1600])[0], classifier.features_and_logits(fake)[0])
        ref = fid(_nchw_features_and_logits(classifier, images[800:1600])[0], _nchw_features_and_logits(classifier, fake)[0])
    assert ref > 1
    assert abs(fast - ref) <= 1e-5 * ref  # the 4th digit moves at 5e-4 relative at the earliest
