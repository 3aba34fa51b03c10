import argparse
import importlib
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import fastgan.metrics.features as features
import fastgan.train.evaluate
from fastgan.cli import eval as eval_command
from fastgan.data import prepare
from fastgan.data.toy import ring8
from fastgan.metrics import FeatureStats, InceptionWeightsNotFound, evaluate_generator, fid, real_image_features
from fastgan.metrics.evaluate import _image_extractor
from fastgan.train.evaluate import evaluate_checkpoint

# The module, not the function of the same name that fastgan.metrics exports.
digits_module = importlib.import_module("fastgan.metrics.digits_classifier")

# The metrics' small matrix products run faster, and steadier, on one thread of a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MixtureGenerator(nn.Module):
    """Maps z to ring8 samples (a perfect generator) or to one mode (a collapsed one)."""

    def __init__(self, collapsed=False):
        super().__init__()
        self.mix, self.collapsed = ring8(), collapsed

    def forward(self, z):
        k = torch.zeros(len(z), dtype=torch.long) if self.collapsed else (z[:, 0].abs() * 1000).long() % 8
        return self.mix.centers[k] + self.mix.std * z[:, 1:3]


class DigitsNoise(nn.Module):
    def forward(self, z):
        return torch.tanh(z[:, :256].view(-1, 1, 16, 16))


@pytest.fixture
def fake_checkpoint(monkeypatch, tmp_path):
    def install(generator, dataset, resolution=16):
        config = SimpleNamespace(dataset=dataset, resolution=resolution, z_dim=256, out_dir=str(tmp_path),
                                 conditional=False, num_classes=0)
        monkeypatch.setattr(fastgan.train.evaluate, "load_generator",
                            lambda path, ema=True, device="cpu": (generator, config, 1234))
        (tmp_path / "metrics.jsonl").write_text('{"step": 1000, "d_loss": 0.5}\n')
        return tmp_path
    return install


def test_toy_checkpoint_metrics_tell_good_from_collapsed(fake_checkpoint):
    run = fake_checkpoint(MixtureGenerator(), "ring8")
    good = evaluate_checkpoint(run, n=1000)
    assert set(good) == {"step", "fid", "kid", "kid_std", "precision", "recall", "modes", "num_modes", "high_quality", "kl"}
    assert good["step"] == 1234 and good["modes"] == 8 and good["high_quality"] > 0.98
    assert good["fid"] < 0.01 and good["recall"] > 0.9
    fake_checkpoint(MixtureGenerator(collapsed=True), "ring8")
    bad = evaluate_checkpoint(run, n=1000)
    assert bad["modes"] == 1 and bad["kl"] == pytest.approx(math.log(8))
    assert bad["fid"] > 1 and bad["recall"] < 0.2


def test_run_eval_prints_a_table_and_appends_a_json_line(fake_checkpoint, capsys):
    run = fake_checkpoint(MixtureGenerator(), "ring8")
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    eval_command.run(parser.parse_args(["--ckpt", str(run), "--metrics", "fid,modes", "--n", "500"]))
    out = capsys.readouterr().out
    assert "fid" in out and "modes" in out and "1234" in out
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    row = json.loads(lines[1])
    assert row["step"] == 1234 and set(row["eval"]) == {"n", "fid", "modes", "num_modes", "high_quality", "kl"}


def test_inapplicable_metrics_are_refused(fake_checkpoint):
    run = fake_checkpoint(MixtureGenerator(), "ring8")
    with pytest.raises(ValueError, match="'is' needs class probabilities"):
        evaluate_checkpoint(run, metrics=("is",), n=100)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_checkpoint(run, metrics=("fjd",), n=100)
    with pytest.raises(ValueError, match="image dataset"):
        evaluate_generator(DigitsNoise(), "digits", 16, 256, metrics=("modes",), n=100)


def test_image_checkpoint_uses_any_extractor_module(monkeypatch, tmp_path):
    import fastgan.metrics.evaluate as evaluate

    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path))

    class TinyExtractor(nn.Module):
        def features_and_logits(self, x):
            f = nn.functional.avg_pool2d(x, 4).flatten(1)
            return f, f[:, :10]

        def forward(self, x):
            return self.features_and_logits(x)[0]

    monkeypatch.setattr(evaluate, "_image_extractor", lambda name, dataset, resolution: (TinyExtractor(), "tiny"))
    result = evaluate_generator(DigitsNoise(), "digits", 16, 256, n=300, batch_size=128)
    assert set(result) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall"}
    assert result["fid"] > 0 and 1 <= result["is"] <= 10
    assert (tmp_path / "stats" / "digits-tiny-r16.npz").is_file()


def test_fid_accepts_generators_features_and_stats():
    gen = MixtureGenerator()
    real = ring8().sample(3000, generator=torch.Generator().manual_seed(0))
    from_generator = fid(real, gen, z_dim=256, n=3000)
    assert 0 <= from_generator < 0.01
    with pytest.raises(ValueError, match="pass z_dim"):
        fid(real, gen)
    with pytest.raises(ValueError, match="pass extractor"):
        fid(torch.zeros(4, 1, 8, 8), real)


# ---- real data from a .fgd file -------------------------------------------------------------------------

class PoolExtractor(nn.Module):
    """Features: 4x4 average pools of every channel; logits: the first 10 of them. Counts the images it sees."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale))
        self.images_seen = 0

    def features_and_logits(self, x):
        self.images_seen += len(x)
        f = nn.functional.avg_pool2d(x, 4).flatten(1) * self.scale
        return f, f[:, :10]

    def forward(self, x):
        return self.features_and_logits(x)[0]


class NoiseImages(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, z):
        return torch.tanh(z[:, : math.prod(self.shape)].view(-1, *self.shape))


def _write_fgd(tmp_path, name, count=150, shape=(3, 8, 8), seed=0):
    images = np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)
    np.savez(tmp_path / f"{name}.npz", images=images)
    return prepare(tmp_path / f"{name}.npz", tmp_path / f"{name}.fgd", progress=False), images


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "stats"


def test_fgd_real_statistics_are_those_of_every_image(tmp_path, cache):
    path, images = _write_fgd(tmp_path, "rgb")
    net = PoolExtractor()
    feats, stats = real_image_features(path, None, net, "pool", batch_size=64)
    expected = net(torch.from_numpy(images).float() * (2 / 255) - 1).double()
    assert stats.n == 150 and feats.shape == (150, 12)
    torch.testing.assert_close(feats.double(), expected, rtol=0, atol=0)
    torch.testing.assert_close(stats.mean, expected.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.cov, torch.from_numpy(np.cov(expected.numpy(), rowvar=False)), rtol=1e-10, atol=1e-12)


def test_fgd_real_statistics_are_cached_by_content_extractor_and_size(tmp_path, cache):
    path, _ = _write_fgd(tmp_path, "rgb")
    net = PoolExtractor()
    _, first = real_image_features(path, None, net, "pool")
    (entry,) = cache.iterdir()
    assert entry.name.startswith("rgb.fgd-") and entry.name.endswith("-pool-8x8.npz")
    seen = net.images_seen
    _, again = real_image_features(path, None, net, "pool")
    assert net.images_seen == seen, "a cache hit must not run the extractor"
    torch.testing.assert_close(again.cov, first.cov, rtol=0, atol=0)
    real_image_features(path, None, net, "other-net")
    assert len(list(cache.iterdir())) == 2
    # Re-preparing the same name with other pixels changes the header's CRC32, so the stale entry is not used.
    _write_fgd(tmp_path, "rgb", seed=1)
    _, changed = real_image_features(path, None, net, "pool")
    assert net.images_seen > seen and len(list(cache.iterdir())) == 3
    assert not torch.equal(changed.mean, first.mean)


def test_fgd_keeps_the_features_of_a_fixed_subset_and_the_statistics_of_all(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(features, "MAX_REAL_FEATURES", 40)
    path, images = _write_fgd(tmp_path, "rgb")
    net = PoolExtractor()
    feats, stats = real_image_features(path, None, net, "pool", batch_size=32)
    all_feats = net(torch.from_numpy(images).float() * (2 / 255) - 1)
    assert feats.shape == (40, 12) and stats.n == 150
    rows = (feats[:, None, :] == all_feats[None, :, :]).all(-1).nonzero()[:, 1]
    assert len(set(rows.tolist())) == 40, "each kept feature is a distinct image's"
    torch.testing.assert_close(stats.mean, all_feats.double().mean(0), rtol=1e-12, atol=1e-12)


def test_user_extractors_get_cache_names_from_their_weights():
    a, b = features.extractor_cache_name(PoolExtractor(1.0)), features.extractor_cache_name(PoolExtractor(2.0))
    assert a != b and a == features.extractor_cache_name(PoolExtractor(1.0))
    assert a.startswith("test_metrics_evaluate.PoolExtractor-") and "/" not in a


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 8, 8)])
def test_generator_of_a_fgd_run_is_evaluated_against_its_file(fake_checkpoint, tmp_path, cache, monkeypatch, shape):
    path, _ = _write_fgd(tmp_path, "data", shape=shape)
    generator = NoiseImages(shape)
    run = fake_checkpoint(generator, str(path))
    net = PoolExtractor()
    result = evaluate_checkpoint(run, n=200, batch_size=64, extractor=net)
    assert set(result) == {"step", "fid", "kid", "kid_std", "is", "is_std", "precision", "recall"}
    assert result["fid"] > 0 and 1 <= result["is"] <= 10
    real = FeatureStats.from_features(real_image_features(path, None, net, features.extractor_cache_name(net))[0])
    assert result["fid"] == pytest.approx(fid(real, generator, net, z_dim=256, n=200, batch_size=64), rel=1e-12)
    assert result["fid"] == pytest.approx(fid(path, generator, net, z_dim=256, n=200, batch_size=64), rel=1e-12)


def test_plain_module_extractor_drops_is_from_the_default_metrics(tmp_path, cache):
    path, _ = _write_fgd(tmp_path, "data")
    pool = nn.Sequential(nn.AvgPool2d(4), nn.Flatten())
    result = evaluate_generator(NoiseImages((3, 8, 8)), path, None, 256, n=100, extractor=pool)
    assert set(result) == {"fid", "kid", "kid_std", "precision", "recall"}
    with pytest.raises(TypeError, match="Inception Score needs class logits"):
        evaluate_generator(NoiseImages((3, 8, 8)), path, None, 256, metrics=("is",), n=100, extractor=pool)


def test_fgd_without_inception_weights_names_what_to_pass(tmp_path, cache, monkeypatch):
    path, _ = _write_fgd(tmp_path, "data", shape=(1, 8, 8))
    monkeypatch.setenv("FASTGAN_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(InceptionWeightsNotFound) as info:
        evaluate_generator(NoiseImages((1, 8, 8)), path, None, 256, n=100)
    message = str(info.value)
    assert "data.fgd" in message and "FASTGAN_INCEPTION_WEIGHTS" in message and "extractor=module" in message
    assert "digits classifier" in message


def test_digits_classifier_is_refused_for_other_data(tmp_path, cache):
    path, _ = _write_fgd(tmp_path, "grey", count=1797, shape=(1, 16, 16))
    with pytest.raises(ValueError, match="only fits the digits dataset"):
        evaluate_generator(NoiseImages((1, 16, 16)), path, None, 256, n=100, extractor="digits")


@pytest.mark.parametrize("resolution", [8, 32])
def test_fgd_written_from_the_builtin_digits_gets_the_digits_classifier(tmp_path, cache, monkeypatch, resolution):
    trained_at = []
    monkeypatch.setattr(digits_module, "digits_classifier", lambda r: trained_at.append(r) or digits_module.DigitsClassifier())
    path = prepare("digits", tmp_path / "digits.fgd", resolution=resolution, progress=False)
    net, name = _image_extractor("auto", path, None)
    assert isinstance(net, digits_module.DigitsClassifier) and name.startswith("digitscnn")
    assert trained_at == [resolution]


def test_missing_fgd_file_is_named_and_dataset_can_be_overridden(fake_checkpoint, tmp_path, cache):
    path, _ = _write_fgd(tmp_path, "data")
    run = fake_checkpoint(NoiseImages((3, 8, 8)), str(tmp_path / "moved-away.fgd"))
    with pytest.raises(FileNotFoundError, match="moved-away.fgd.*not found.*--dataset"):
        evaluate_checkpoint(run, n=100, extractor=PoolExtractor())
    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    args = parser.parse_args(["--ckpt", str(run), "--dataset", os.fspath(path), "--metrics", "fid", "--n", "100"])
    assert args.dataset == os.fspath(path)
    result = evaluate_checkpoint(run, metrics=("fid",), n=100, extractor=PoolExtractor(), dataset=path)
    assert result["fid"] > 0


def test_fid_of_a_path_needs_a_fgd_file_and_an_extractor(tmp_path):
    with pytest.raises(ValueError, match="must name a .fgd file"):
        fid("images.npz", torch.zeros(10, 2))
    with pytest.raises(ValueError, match="pass extractor="):
        fid(tmp_path / "x.fgd", torch.zeros(10, 2))
