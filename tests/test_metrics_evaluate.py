import argparse
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import fastgan.train
from fastgan.data.toy import ring8
from fastgan.metrics import add_eval_arguments, evaluate_checkpoint, evaluate_generator, fid, run_eval


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
        config = SimpleNamespace(dataset=dataset, resolution=resolution, z_dim=256, out_dir=str(tmp_path))
        monkeypatch.setattr(fastgan.train, "load_generator", lambda path, ema=True: (generator, config, 1234))
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
    args = add_eval_arguments(argparse.ArgumentParser()).parse_args(["--ckpt", str(run), "--metrics", "fid,modes", "--n", "500"])
    run_eval(args)
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
