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
