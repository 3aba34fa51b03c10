"""The EMA generator: what fastgan.train.ema.EMA keeps (averaged parameters, copied buffers, eval mode, the decay
ramp) after updates, after the model's tensors are replaced, and across a checkpoint and resume."""
from __future__ import annotations

import copy

import pytest
import torch
from state_compare import assert_same
from torch import nn

from fastgan.train import Trainer, TrainConfig, load_checkpoint
from fastgan.train.checkpoint import save_checkpoint
from fastgan.train.ema import EMA

SMALL = dict(dataset="digits", resolution=16, model="dcgan", g_width=8, d_width=8, z_dim=16, batch_size=16,
             progress=False, log_every=5, sample_every=1000, ckpt_every=1000, n_samples=16)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _train_mode_forward(model: nn.Module, seed: int) -> None:
    """A forward in training mode: batch norm's running statistics move."""
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, generator=torch.Generator().manual_seed(seed)) * 3 + seed)


def _assert_buffers_equal(ema: EMA, model: nn.Module) -> None:
    names = [name for name, _ in model.named_buffers()]
    assert names == [name for name, _ in ema.module.named_buffers()] and names
    assert_same(dict(ema.module.named_buffers()), dict(model.named_buffers()))


def test_ema_module_is_a_separate_eval_copy_that_needs_no_grad():
    model = _model()
    ema = EMA(model, 0.99)
    assert ema.module is not model and not ema.module.training and ema.num_updates == 0
    assert_same(ema.module.state_dict(), model.state_dict())
    for p, q in zip(ema.module.parameters(), model.parameters()):
        assert not p.requires_grad and p.data_ptr() != q.data_ptr()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(next(ema.module.parameters()), next(model.parameters()))


@pytest.mark.parametrize("decay", [0.0, 0.3, 0.9, 0.999])
def test_update_lerps_parameters_with_the_ramped_decay(decay):
    model = _model()
    ema = EMA(model, decay)
    expected = [p.detach().double().clone() for p in model.parameters()]
    for t in range(12):
        d = min(decay, (1 + t) / (10 + t))
        assert ema.current_decay() == pytest.approx(d, rel=1e-15)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(t)))
        ema.update(model)
        assert ema.num_updates == t + 1
        expected = [d * e + (1 - d) * p.detach().double() for e, p in zip(expected, model.parameters())]
        for e, p in zip(expected, ema.module.parameters()):
            torch.testing.assert_close(p.double(), e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 3])
def test_update_copies_the_buffers_after_every_step(steps):
    model = _model()
    ema = EMA(model, 0.9)
    for step in range(steps):
        _train_mode_forward(model, step)
        ema.update(model)
        _assert_buffers_equal(ema, model)
    assert int(ema.module[1].num_batches_tracked) == steps
    # So the EMA network normalises with the generator's running statistics, not its initial ones.
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(9))
    bn = model[1]
    expected = (ema.module[0](x) - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * ema.module[1].weight
    torch.testing.assert_close(ema.module[:2](x), expected + ema.module[1].bias)


def test_update_copies_buffers_that_were_replaced_by_new_tensors():
    # Buffers may be new tensor objects between updates (module.to(), plain assignment); each update reads them.
    model = _model()
    ema = EMA(model, 0.9)
    ema.update(model)
    model[1].running_mean = torch.full((4,), 3.0)
    model[1].running_var = torch.full((4,), 0.25)
    ema.update(model)
    _assert_buffers_equal(ema, model)


def test_update_follows_the_model_it_is_given():
    # The parameter lists are cached per model: a different model object (a rebuilt generator) is listed anew.
    first, second = _model(0), _model(1)
    ema = EMA(first, 0.0)  # decay 0: the EMA is the model
    ema.update(first)
    ema.update(second)
    assert_same(dict(ema.module.named_parameters()), {k: v.detach() for k, v in second.named_parameters()})
    _assert_buffers_equal(ema, second)


def test_update_sees_parameters_loaded_in_place():
    model, other = _model(0), _model(1)
    ema = EMA(model, 0.0)
    ema.update(model)
    model.load_state_dict(other.state_dict())
    ema.update(model)
    assert_same(ema.module.state_dict(), other.state_dict())


def test_update_leaves_the_model_and_autograd_alone():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    ema = EMA(model, 0.5)
    ema.update(model)
    assert_same(model.state_dict(), before)
    assert all(p.grad_fn is None and not p.requires_grad for p in ema.module.parameters())


# ---------------------------------------------------------------- in the trainer

def _config(tmp_path, **overrides):
    return TrainConfig(out_dir=str(tmp_path), **{**SMALL, "ema_decay": 0.8, **overrides})


def test_trainer_ema_generator_has_the_generators_running_statistics(tmp_path):
    trainer = Trainer(_config(tmp_path))
    batches = trainer.real_batches()
    initial = {k: v.clone() for k, v in trainer.ema.module.named_buffers()}
    for _ in range(3):
        trainer.train_step(batches)
        _assert_buffers_equal(trainer.ema, trainer.generator)
    assert trainer.sampler() is trainer.ema.module and not trainer.sampler().training
    # The statistics did move, so a copy that never happened would show.
    assert not torch.equal(trainer.ema.module.state_dict()[next(k for k in initial if "running_mean" in k)],
                           initial[next(k for k in initial if "running_mean" in k)])


def test_checkpointed_ema_holds_the_generators_buffers(tmp_path):
    trainer = Trainer(_config(tmp_path))
    batches = trainer.real_batches()
    for _ in range(3):
        trainer.train_step(batches)
    state = load_checkpoint(save_checkpoint(trainer.state_dict(), tmp_path))
    generator = state["networks"]["generator"]
    buffers = [k for k in generator if "running_" in k or "num_batches_tracked" in k]
    assert buffers
    for k in buffers:
        assert torch.equal(state["ema"][k], generator[k]), k
    assert_same(state["ema"], trainer.ema.module.state_dict())


def test_resumed_trainer_restores_the_ema_and_tracks_on_as_without_the_break(tmp_path):
    a = Trainer(_config(tmp_path))
    batches = a.real_batches()
    for _ in range(3):
        a.train_step(batches)
    state = copy.deepcopy(a.state_dict())
    ema_at_3 = copy.deepcopy(a.ema.module.state_dict())
    for _ in range(2):
        a.train_step(batches)
    samples_a = a.generate(8, seed=4)

    b = Trainer(_config(tmp_path))
    b.load_state_dict(state)
    assert_same(b.ema.module.state_dict(), ema_at_3)
    # The decay ramp goes on from the step reached; the EMA network stays in eval mode without gradients.
    assert b.ema.num_updates == 3 and b.ema.current_decay() == pytest.approx(min(0.8, 4 / 13))
    assert not b.ema.module.training and not any(p.requires_grad for p in b.ema.module.parameters())
    batches = b.real_batches()
    for _ in range(2):
        b.train_step(batches)
        _assert_buffers_equal(b.ema, b.generator)
    assert b.ema.num_updates == a.ema.num_updates == 5
    assert_same(b.ema.module.state_dict(), a.ema.module.state_dict())
    assert torch.equal(b.generate(8, seed=4), samples_a)
