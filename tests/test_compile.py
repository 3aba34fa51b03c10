"""torch.compile(fullgraph=True), default inductor backend, on the CPU, of a small GAN built from fastgan.nn blocks.

The generator and discriminator use ConvTransposeBlock / ConvBlock with both fused epilogues (batch
norm + activation and bias + activation) and the fused d_loss / g_loss on the logits; without a Triton
kernel they trace as plain torch ops, where one runs as the fastgan ops. fullgraph=True
raises on any graph break; the compiled losses, parameter gradients and batch-norm running statistics
must equal eager ones to float32 rounding. Inductor compiles once for the whole module (its C++
kernels take tens of seconds to build on a 2-core CPU), and the second training step must reuse that.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fastgan import losses
from fastgan.nn import ConvBlock, ConvTransposeBlock

Z_DIM, BATCH = 8, 4
FUSED_OPS = {"fastgan.bias_act", "fastgan.batch_norm_act", "fastgan.d_loss", "fastgan.g_loss"}


class TinyGAN(nn.Module):
    """z (N, Z_DIM, 1, 1) -> 8x8 RGB -> one logit per image; forward returns (d_loss, g_loss)."""

    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(
            ConvTransposeBlock(Z_DIM, 8, 4, 1, 0, norm="batch", act="relu"),  # 1x1 -> 4x4
            ConvTransposeBlock(8, 3, 4, 2, 1, norm="none", act="tanh"),  # 4x4 -> 8x8
        )
        self.discriminator = nn.Sequential(
            ConvBlock(3, 8, norm="batch", act="lrelu", alpha=0.2),  # 8x8 -> 4x4
            nn.Conv2d(8, 1, 4),
            nn.Flatten(0),
        )
        with torch.no_grad():
            # Non-zero epilogue biases, so their gradients are not trivially equal.
            for module in self.modules():
                if isinstance(module, (ConvBlock, ConvTransposeBlock)):
                    module.post.bias.normal_(0.0, 0.1)

    def forward(self, z: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # D's logits on the fake batch feed both losses (no detach here: the test sums them anyway).
        fake_logits = self.discriminator(self.generator(z))
        return losses.d_loss(self.discriminator(real), fake_logits, "bce"), losses.g_loss(fake_logits, "ns")


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, Z_DIM, 1, 1, generator=g), torch.rand(BATCH, 3, 8, 8, generator=g) * 2 - 1


def _train_step(model, call, seed):
    """Losses and parameter gradients of one step; weights d + 0.5 g so both losses reach the gradients."""
    model.zero_grad()
    d, g = call(*_inputs(seed))
    (d + 0.5 * g).backward()
    return (d.detach(), g.detach()), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    eager = TinyGAN()
    compiled = copy.deepcopy(eager)
    return eager, compiled, torch.compile(compiled, fullgraph=True)


@pytest.fixture(scope="module")
def steps(models):
    """Two training steps, eager and compiled; the second (new inputs, same shapes) may not recompile."""
    eager, compiled, compiled_call = models
    first = (_train_step(eager, eager, 1), _train_step(compiled, compiled_call, 1))
    with torch.compiler.set_stance("fail_on_recompile"):
        second = (_train_step(eager, eager, 2), _train_step(compiled, compiled_call, 2))
    return [first, second]


def _traced_ops() -> set[str]:
    explanation = torch._dynamo.explain(TinyGAN())(*_inputs(0))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    return {str(node.target).rsplit(".", 1)[0] for node in explanation.graphs[0].graph.nodes
            if node.op == "call_function"}


def test_without_a_kernel_the_gan_traces_as_one_graph_of_plain_torch_ops():
    # No Triton kernel on the CPU: the fused ops trace as their eager paths' torch ops, which inductor fuses.
    traced = _traced_ops()
    assert not {op for op in traced if op.startswith("fastgan.")}, traced
    assert any("batch_norm" in op for op in traced) and any("softplus" in op for op in traced), traced


def test_where_a_kernel_runs_the_gan_traces_as_one_graph_containing_the_fused_ops(monkeypatch):
    import fastgan.fused.batch_norm_act
    import fastgan.fused.bias_act
    import fastgan.fused.gan_loss

    for module in (fastgan.fused.bias_act, fastgan.fused.batch_norm_act, fastgan.fused.gan_loss):
        monkeypatch.setattr(module, "runs_eager", lambda t, min_numel: False)  # what a CUDA tensor sees
    traced = _traced_ops()
    assert FUSED_OPS <= traced, traced


@pytest.mark.parametrize("step", [0, 1])
def test_compiled_losses_match_eager(steps, step):
    (eager_losses, _), (compiled_losses, _) = steps[step]
    for e, c in zip(eager_losses, compiled_losses):
        torch.testing.assert_close(c, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("step", [0, 1])
def test_compiled_gradients_match_eager(steps, step):
    (_, eager_grads), (_, compiled_grads) = steps[step]
    assert compiled_grads.keys() == eager_grads.keys()
    for name, e in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], e, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_compiled_running_statistics_match_eager(models, steps):
    eager, compiled, _ = models
    for (name, e), c in zip(eager.named_buffers(), compiled.buffers()):
        torch.testing.assert_close(c, e, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
    # Two steps: the generator's batch norm ran once per step, the discriminator's twice.
    assert int(compiled.generator[0].post.num_batches_tracked) == 2
    assert int(compiled.discriminator[0].post.num_batches_tracked) == 4


def test_the_backend_choice_carries_the_mark_torch_compiler_assume_constant_result_sets():
    """fastgan.fused.backend marks backend() itself rather than import torch._dynamo for the decorator; the mark
    must be the decorator's own, or torch.compile would trace the choice instead of reading it."""
    from fastgan.fused import backend as module

    def probe():
        return None

    before = set(vars(probe))
    torch.compiler.assume_constant_result(probe)
    marks = {name: vars(probe)[name] for name in set(vars(probe)) - before}
    assert marks and all(getattr(module.backend, name, None) == value for name, value in marks.items())


def test_importing_fastgan_leaves_torch_dynamo_unimported():
    """torch._dynamo takes ~1.7 s to import, a third of a fastgan command's start; torch.compile imports it when
    a run asks for it."""
    import subprocess
    import sys

    code = "import sys, fastgan, fastgan.cli; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
