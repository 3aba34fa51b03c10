"""Class-conditional GANs (--conditional): batch_norm_act with per-sample weight and bias (conditional batch norm),
the conditional networks of dcgan, resnet and mlp, the trainer, sample --class, eval's class accuracy, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from state_compare import assert_same

from fastgan import ops, reference
from fastgan.cli import main
from fastgan.data.format import write_fgd
from fastgan.fused import batch_norm_act as bn_module
from fastgan.fused.activations import ACTIVATIONS
from fastgan.models import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, ResNetDiscriminator,
                            ResNetGenerator)
from fastgan.nn import ConditionalBatchNormAct
from fastgan.train import TrainConfig, load_checkpoint, load_generator, train
from fastgan.train.evaluate import evaluate_checkpoint

TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


# ---------------------------------------------------------------- batch_norm_act with per-sample weight and bias

def _inputs(shape, dtype, g, per_sample_weight=True, per_sample_bias=True, channels_last=False):
    n, c = shape[:2]
    x = torch.randn(shape, generator=g, dtype=dtype) * 2 + 1
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.rand((n, c) if per_sample_weight else (c,), generator=g, dtype=dtype) + 0.5
    b = torch.randn((n, c) if per_sample_bias else (c,), generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, w, b)]


def _op(x, w, b, mean, var, training, act):
    """The torch.library op itself (what the CUDA path and torch.compile run), not the CPU eager path."""
    y, _, _, _ = bn_module._batch_norm_act_op(x, w, b, mean, var, training, 1e-5, act, 0.2)
    return y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape, channels_last", [((4, 3, 5, 5), False), ((4, 3, 5, 5), True), ((6, 3), False),
                                                  ((3, 4, 7), False)])
def test_per_sample_batch_norm_act_matches_reference_forward_and_backward(dtype, act, training, shape, channels_last):
    g = torch.Generator().manual_seed(1)
    x, w, b = _inputs(shape, dtype, g, channels_last=channels_last)
    c = shape[1]
    stats = [torch.randn(c, generator=g, dtype=dtype), torch.rand(c, generator=g, dtype=dtype) + 0.5]
    dy = torch.randn(shape, generator=g, dtype=dtype)
    ref_stats = [s.clone() for s in stats]
    ref = reference.batch_norm_act(x, w, b, *ref_stats, training, 0.1, 1e-5, act, 0.2)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dy)
    for path in ("eager", "op"):
        run_stats = [s.clone() for s in stats]
        out = (ops.batch_norm_act(x, w, b, *run_stats, training, 0.1, 1e-5, act, 0.2) if path == "eager"
               else _op(x, w, b, *run_stats, training, act))
        assert out.shape == x.shape and out.dtype == dtype
        torch.testing.assert_close(out, ref, **TOL[dtype])
        grads = torch.autograd.grad(out, (x, w, b), dy)
        for got, want, t in zip(grads, ref_grads, (x, w, b)):
            assert got.shape == t.shape and got.dtype == t.dtype
            torch.testing.assert_close(got, want, **TOL[dtype])
        if path == "eager":  # the op leaves the running statistics to the public function
            for s, r in zip(run_stats, ref_stats):
                torch.testing.assert_close(s, r, **TOL[dtype])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("weight_per_sample, bias_per_sample", [(True, True), (True, False), (False, True)])
def test_per_sample_op_gradients_pass_gradcheck_to_second_order(training, weight_per_sample, bias_per_sample):
    g = torch.Generator().manual_seed(2)
    x, w, b = _inputs((3, 2, 2, 3), torch.float64, g, weight_per_sample, bias_per_sample)
    mean, var = torch.randn(2, generator=g, dtype=torch.float64), torch.rand(2, generator=g, dtype=torch.float64) + 1

    def f(x, w, b):
        return _op(x, w, b, mean, var, training, "tanh")

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_per_sample_weight_equals_per_channel_weight_when_every_row_is_the_same():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, 3, 3, generator=g)
    w, b = torch.rand(4, generator=g) + 0.5, torch.randn(4, generator=g)
    per_channel = ops.batch_norm_act(x, w, b, None, None, True, act="lrelu", alpha=0.2)
    per_sample = ops.batch_norm_act(x, w.expand(5, 4), b.expand(5, 4), None, None, True, act="lrelu", alpha=0.2)
    torch.testing.assert_close(per_sample, per_channel)


def test_per_sample_batch_norm_act_compiles_without_graph_breaks():
    g = torch.Generator().manual_seed(4)
    x, w, b = _inputs((4, 3, 2, 2), torch.float32, g)

    def step(x, w, b):
        return ops.batch_norm_act(x, w, b, None, None, True, act="relu").square().sum()

    assert torch._dynamo.explain(step)(x, w, b).graph_break_count == 0
    torch._dynamo.reset()
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    got = torch.autograd.grad(compiled(x, w, b), (x, w, b))
    want = torch.autograd.grad(step(x, w, b), (x, w, b))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def test_per_sample_batch_norm_act_names_a_wrong_shape_and_keeps_nan():
    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\) or, per sample, \(4, 3\)"):
        ops.batch_norm_act(x, torch.ones(5, 3), None, None, None, True)
    with pytest.raises(ValueError, match=r"bias must have shape"):
        ops.batch_norm_act(x, None, torch.ones(4, 3, 1), None, None, True)
    x[1, 2, 0, 0] = float("nan")
    y = ops.batch_norm_act(x, torch.ones(4, 3), torch.zeros(4, 3), None, None, True, act="linear")
    assert y[:, 2].isnan().all() and y[:, :2].isfinite().all()


# ---------------------------------------------------------------- the networks

def test_conditional_batch_norm_starts_as_plain_batch_norm_and_trains_its_rows():
    torch.manual_seed(0)
    cbn = ConditionalBatchNormAct(3, num_classes=5, act="relu")
    x, labels = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 1, 3, 0, 1])
    plain = torch.nn.functional.relu(torch.nn.functional.batch_norm(x, None, None, training=True))
    torch.testing.assert_close(cbn(x, labels), plain)
    assert cbn.running_mean.abs().sum() > 0 and cbn.num_batches_tracked == 1
    (cbn(x, labels) * torch.randn(6, 3, 4, 4)).sum().backward()
    seen = torch.zeros(5, dtype=torch.bool)
    seen[labels] = True
    for table in (cbn.class_weight, cbn.class_bias):
        assert (table.grad[seen].abs().sum(1) > 0).all()  # each class present gets its own gradient
        assert (table.grad[~seen] == 0).all()  # and the absent ones none


NETWORKS = {
    "dcgan": lambda k: (DCGANGenerator(16, 16, 1, 8, num_classes=k), DCGANDiscriminator(16, 1, 8, num_classes=k)),
    "dcgan-sn-mbstd": lambda k: (DCGANGenerator(16, 32, 3, 8, num_classes=k),
                                 DCGANDiscriminator(32, 3, 8, spectral_norm=True, mbstd=True, num_classes=k)),
    "resnet": lambda k: (ResNetGenerator(16, 16, 1, 8, num_classes=k),
                         ResNetDiscriminator(16, 1, 8, spectral_norm=True, num_classes=k)),
    "mlp": lambda k: (MLPGenerator(16, (32,), (1, 16, 16), num_classes=k),
                      MLPDiscriminator((1, 16, 16), (32,), num_classes=k)),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_conditional_networks_take_labels_and_pass_gradients_to_their_class_parameters(name):
    torch.manual_seed(0)
    g, d = NETWORKS[name](10)
    z, labels = torch.randn(8, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    images = g(z, labels)
    assert images.shape == (8, g.channels if hasattr(g, "channels") else 1, *images.shape[2:])
    logits = d(images, labels)
    assert logits.shape == (8,)
    logits.sum().backward()
    class_params = {n: p for n, p in [*g.named_parameters(), *d.named_parameters()]
                    if "class_" in n or "projection" in n or (name == "mlp" and n.endswith("net.0.weight"))
                    or (name == "mlp" and n.endswith("net.1.weight"))}
    assert class_params, name
    for n, p in class_params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    # Another label changes the sample (once the class tables, which start equal for every class, have moved)
    # and the judgement.
    other = (labels + 5) % 10
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNormAct):
                m.class_weight.normal_(1.0, 0.5)
        g.eval()
        assert not torch.allclose(g(z, labels), g(z, other))
        assert not torch.allclose(d(images.detach(), labels), d(images.detach(), other))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_conditional_generator_without_labels_draws_balanced_classes_and_d_needs_them(name):
    torch.manual_seed(0)
    g, d = NETWORKS[name](3)
    g.eval()
    z = torch.randn(7, 16)
    with torch.no_grad():
        torch.testing.assert_close(g(z), g(z, torch.tensor([0, 1, 2, 0, 1, 2, 0])))
    with pytest.raises(ValueError, match="needs the .* labels"):
        d(g(z).detach())
    with pytest.raises(ValueError, match=r"labels must have shape \(7,\)"):
        g(z, torch.zeros(3, dtype=torch.int64))


def test_unconditional_networks_keep_their_state_dict_keys():
    for name in ("dcgan", "resnet", "mlp"):
        g, d = NETWORKS[name](0)
        keys = set(g.state_dict()) | set(d.state_dict())
        assert not any("class_" in k or "projection" in k for k in keys), name


@pytest.mark.parametrize("name", ["dcgan", "resnet"])
def test_conditional_networks_compile_in_one_graph(name):
    torch.manual_seed(0)
    g, d = NETWORKS[name](10)
    z, labels = torch.randn(4, 16), torch.tensor([3, 1, 4, 1])

    def step(z, labels):
        return d(g(z, labels), labels).square().sum()

    assert torch._dynamo.explain(step)(z, labels).graph_break_count == 0
    torch._dynamo.reset()
    params = [*g.parameters(), *d.parameters()]
    # Spectral norm's power iteration moves with each training-mode call: compare gradients from equal states.
    states = [{k: v.clone() for k, v in net.state_dict().items()} for net in (g, d)]
    got = torch.autograd.grad(torch.compile(step, backend="aot_eager", fullgraph=True)(z, labels), params)
    for net, state in zip((g, d), states):
        net.load_state_dict(state)
    want = torch.autograd.grad(step(z, labels), params)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- training runs

SMALL = dict(dataset="digits", resolution=16, model="dcgan", g_width=8, d_width=8, z_dim=16, batch_size=16,
             progress=False, log_every=5, sample_every=1000, ckpt_every=1000, n_samples=20, conditional=True)


def small(tmp_path, **overrides) -> TrainConfig:
    settings = {**SMALL, **overrides}
    if settings["model"] == "mlp":  # its widths are mlp_hidden
        del settings["g_width"], settings["d_width"]
    return TrainConfig(out_dir=str(tmp_path), **settings)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    return train(small(tmp_path_factory.mktemp("runs"), steps=6, name="cond"))


def test_conditional_run_records_its_classes_and_writes_a_row_per_class(conditional_run):
    from PIL import Image

    config = json.loads((conditional_run / "config.json").read_text())
    assert config["conditional"] and config["num_classes"] == 10
    generator, saved, step = load_generator(conditional_run)
    assert saved.num_classes == 10 and step == 6
    assert generator(torch.randn(3, 16), torch.tensor([9, 0, 4])).shape == (3, 1, 16, 16)
    # n_samples 20: 2 per class, 10 rows of 2; each image is 16 px scaled 4x with 2 px padding at scale 4.
    with Image.open(conditional_run / "samples.png") as grid:
        assert grid.size == ((2 * 18 + 2) * 4, (10 * 18 + 2) * 4)


def test_ema_generator_of_a_conditional_run_takes_labels(conditional_run):
    state = load_checkpoint(conditional_run)
    assert state["ema"] is not None and "net.0.post.class_weight" in state["ema"]
    raw, _, _ = load_generator(conditional_run, ema=False)
    ema, _, _ = load_generator(conditional_run, ema=True)
    z, labels = torch.randn(4, 16), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        assert not torch.equal(raw(z, labels), ema(z, labels))


@pytest.mark.parametrize("model, extra", [("dcgan", {}), ("resnet", {"n_critic": 2}), ("mlp", {"gp_weight": 1.0}),
                                          ("dcgan", {"r1_gamma": 1.0, "r1_every": 2, "diffaug": "translation"})])
def test_conditional_resume_is_bit_identical(tmp_path, model, extra):
    def params(run):
        state = load_checkpoint(run)
        return {k: state[k] for k in ("networks", "ema", "optimizers", "scalers")}

    options = dict(model=model, **extra, **({"mlp_hidden": (32,)} if model == "mlp" else {}))
    full = train(small(tmp_path, steps=10, name="full", **options))
    train(small(tmp_path, steps=4, name="part", **options))
    resumed = train(small(tmp_path, steps=10, name="part", resume=True, **options))
    assert_same(params(full), params(resumed))


def test_conditional_options_fail_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="conditional: is an option of dcgan, resnet, r3gan, mlp, not of model vae"):
        TrainConfig(model="vae", conditional=True)
    with pytest.raises(ValueError, match="--conditional needs class labels and ring8 has none"):
        train(small(tmp_path, model="mlp", dataset="ring8", steps=1))
    unlabelled = tmp_path / "unlabelled.fgd"
    write_fgd(unlabelled, np.zeros((20, 1, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="unlabelled.fgd has none: train on labelled data"):
        train(small(tmp_path, dataset=str(unlabelled), steps=1))
    assert not (tmp_path / "unlabelled").exists()
    labelled = tmp_path / "labelled.fgd"
    write_fgd(labelled, np.zeros((20, 1, 16, 16), np.uint8), np.arange(20) % 4)
    with pytest.raises(ValueError, match="labels go up to 3, beyond --num-classes 2; pass --num-classes 4"):
        train(small(tmp_path, dataset=str(labelled), num_classes=2, steps=1))
    with pytest.raises(ValueError, match="num_classes: must be >= 0, and applies to conditional runs only"):
        TrainConfig(num_classes=3)
    with pytest.raises(ValueError, match="pac: must be 1 with conditional"):
        TrainConfig(conditional=True, pac=2)


def test_num_classes_may_exceed_the_labels_present(tmp_path):
    labelled = tmp_path / "labelled.fgd"
    write_fgd(labelled, np.random.default_rng(0).integers(0, 255, (32, 1, 16, 16), np.uint8), np.arange(32) % 3)
    run = train(small(tmp_path, dataset=str(labelled), num_classes=5, steps=2, name="five"))
    assert json.loads((run / "config.json").read_text())["num_classes"] == 5


def test_cli_conditional_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--conditional", "--model", "vae", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conditional: is an option of dcgan, resnet, r3gan, mlp" in err
    assert main(["train", "--conditional", "--model", "mlp", "--dataset", "ring8", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--conditional needs class labels and ring8 has none" in err


# ---------------------------------------------------------------- sample --class, eval's class accuracy

def test_sample_writes_a_row_per_class_or_one_class(conditional_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["sample", "--ckpt", str(conditional_run), "--n", "35", "--out", str(out)]) == 0
    assert "wrote 30 samples, 3 of each of its 10 classes (a row per class)" in capsys.readouterr().out
    with Image.open(out) as grid:
        assert grid.size == ((3 * 18 + 2) * 4, (10 * 18 + 2) * 4)
    one = tmp_path / "seven.png"
    assert main(["sample", "--ckpt", str(conditional_run), "--n", "4", "--class", "7", "--out", str(one)]) == 0
    assert "wrote 4 samples of class 7" in capsys.readouterr().out
    generator, config, _ = load_generator(conditional_run)
    from fastgan.train.families import family

    expected = family("dcgan").trainer.draw_samples(generator, config, 4, 0, "cpu", torch.full((4,), 7))
    other = family("dcgan").trainer.draw_samples(generator, config, 4, 0, "cpu", torch.full((4,), 2))
    assert not torch.equal(expected, other)


def test_sample_class_out_of_range_or_on_an_unconditional_run_is_a_one_line_error(conditional_run, tmp_path, capsys):
    assert main(["sample", "--ckpt", str(conditional_run), "--class", "10", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == "fastgan sample: error: --class 10: the run has classes 0 to 9"
    assert main(["sample", "--ckpt", str(conditional_run), "--class", "-1", "--out", str(tmp_path / "x.png")]) == 2
    assert "the run has classes 0 to 9" in capsys.readouterr().err
    plain = train(small(tmp_path, conditional=False, steps=1, name="plain"))
    assert main(["sample", "--ckpt", str(plain), "--class", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "is not a conditional run (trained without --conditional)" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_eval_reports_class_accuracy_of_a_conditional_digits_run(conditional_run):
    result = evaluate_checkpoint(conditional_run, n=100, batch_size=50)
    assert {"fid", "class_accuracy", "class_accuracy_min"} <= set(result)
    assert 0 <= result["class_accuracy_min"] <= result["class_accuracy"] <= 1
    only = evaluate_checkpoint(conditional_run, metrics=["acc"], n=100, batch_size=50)
    assert set(only) == {"step", "class_accuracy", "class_accuracy_min"}
    assert only["class_accuracy"] == result["class_accuracy"]


def test_class_accuracy_is_one_for_a_generator_that_draws_the_real_digit_of_its_label():
    from fastgan.data.builtin import digits
    from fastgan.metrics import digits_classifier
    from fastgan.metrics.classes import class_accuracy

    images, labels = digits(16)
    images = torch.from_numpy(images).float() / 127.5 - 1
    with torch.no_grad():
        _, logits = digits_classifier(16).features_and_logits(images)
    # Each class's most clearly recognised real digit.
    clearest = {k: images[int(torch.where(torch.from_numpy(labels) == k, logits[:, k], -torch.inf).argmax())]
                for k in range(10)}

    class Lookup(torch.nn.Module):
        def forward(self, z, y):
            return torch.stack([clearest[int(k)] for k in y])

    result = class_accuracy(Lookup(), digits_classifier(16), 10, 40, 4, batch_size=16)
    assert result == {"class_accuracy": 1.0, "class_accuracy_min": 1.0}

    class Shifted(Lookup):
        def forward(self, z, y):
            return super().forward(z, (y + 1) % 10)

    assert class_accuracy(Shifted(), digits_classifier(16), 10, 40, 4)["class_accuracy"] == 0.0


def test_acc_needs_a_conditional_generator(conditional_run, tmp_path):
    plain = train(small(tmp_path, conditional=False, steps=1, name="plain"))
    with pytest.raises(ValueError, match="'acc' scores a class-conditional image generator"):
        evaluate_checkpoint(plain, metrics=["acc"], n=20)
