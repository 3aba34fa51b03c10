"""The stable names of DESIGN.md's "Public API": each importable from where users reach it, and each
layer behind it in one place."""
from __future__ import annotations

import pytest
import torch

import fastgan as fg
from fastgan.fused import activations, batch_norm_act, bce_with_logits, bias_act, gan_loss
from fastgan.fused import backend as fused_backend

# ---------------------------------------------------------------- fused layer: fastgan.functional, nn, losses, ops, reference

FUSED_OPS = ("bce_with_logits", "loss_grad", "d_loss", "g_loss", "bias_act", "bias_act_backward", "batch_norm_act",
             "batch_norm_act_backward")


def test_fused_layer_faces_export_the_fused_modules_functions():
    assert fg.functional.binary_cross_entropy_with_logits is bce_with_logits.binary_cross_entropy_with_logits
    assert fg.losses.d_loss is gan_loss.d_loss
    assert fg.losses.g_loss is gan_loss.g_loss
    assert fg.losses.r1_penalty is gan_loss.r1_penalty
    assert fg.losses.gradient_penalty is gan_loss.gradient_penalty
    assert fg.losses.r1_r2_penalty is gan_loss.r1_r2_penalty
    assert fg.losses.D_LOSS_KINDS == ("bce", "hinge", "lsgan", "wgan", "rpgan")
    assert fg.losses.G_LOSS_KINDS == ("ns", "saturating", "hinge", "lsgan", "wgan", "rpgan")
    assert fg.ops.bias_act is bias_act.bias_act
    assert fg.ops.batch_norm_act is batch_norm_act.batch_norm_act
    assert issubclass(fg.nn.BCEWithLogitsLoss, torch.nn.Module)


def test_fused_layer_references_are_public():
    ref = fg.reference
    assert ref.bce_with_logits is bce_with_logits.bce_with_logits_reference
    assert ref.d_loss is gan_loss.d_loss_reference
    assert ref.g_loss is gan_loss.g_loss_reference
    assert ref.bias_act is bias_act.bias_act_reference
    assert ref.batch_norm_act is batch_norm_act.batch_norm_act_reference
    assert ref.REDUCTIONS == ("mean", "sum", "none")
    assert (ref.D_LOSS_KINDS, ref.G_LOSS_KINDS) == (fg.losses.D_LOSS_KINDS, fg.losses.G_LOSS_KINDS)
    assert ref.wide(torch.ones(1, dtype=torch.float16)).dtype == torch.float32
    for name in ref.__all__:
        assert getattr(ref, name) is not None, name


def test_fused_layer_public_functions_run_on_the_cpu():
    x, t = torch.randn(4, 3), torch.rand(4, 3)
    torch.testing.assert_close(fg.functional.binary_cross_entropy_with_logits(x, t),
                               torch.nn.functional.binary_cross_entropy_with_logits(x, t))
    torch.testing.assert_close(fg.nn.BCEWithLogitsLoss()(x, t), torch.nn.BCEWithLogitsLoss()(x, t))
    assert fg.losses.d_loss(x[:, :1], x[:2, :1], kind="hinge").shape == ()
    assert fg.losses.g_loss(x[:, :1], kind="ns").shape == ()
    assert fg.ops.bias_act(x, torch.zeros(3), act="lrelu", alpha=0.2, gain=None, clamp=None, dim=1).shape == x.shape
    y = fg.ops.batch_norm_act(x, torch.ones(3), torch.zeros(3), torch.zeros(3), torch.ones(3), True, 0.1, 1e-5,
                              act="relu")
    assert y.shape == x.shape


@pytest.mark.parametrize("name", FUSED_OPS)
def test_fused_op_is_registered_with_torch_library(name):
    op = getattr(torch.ops.fastgan, name)
    assert op.default._schema.name == f"fastgan::{name}"


def test_activation_table_exists_once():
    assert fg.reference.ACTIVATIONS is activations.ACTIVATIONS
    assert fg.reference.Activation is activations.Activation
    assert fg.reference.activation_spec is activations.activation_spec
    table = activations.ACTIVATIONS
    assert list(table) == ["linear", "relu", "lrelu", "tanh", "sigmoid"]
    assert all(row.name == name for name, row in table.items())
    assert sorted(row.code for row in table.values()) == list(range(len(table)))
    with pytest.raises(ValueError, match="unknown activation 'nope'; choose one of linear, relu, lrelu, tanh, sigmoid"):
        activations.activation_spec("nope")


def test_kernels_know_each_activation_by_its_table_code():
    tl = pytest.importorskip("triton.language")
    from fastgan.kernels import _common

    table = {name.upper(): row.code for name, row in activations.ACTIVATIONS.items()}
    kernel_codes = {name: value.value for name, value in vars(_common).items()
                    if isinstance(value, tl.constexpr) and name in table}
    assert kernel_codes == table


def test_each_fused_op_has_a_kernel_module_of_the_same_stem():
    pytest.importorskip("triton")
    from fastgan.kernels import batch_norm_act as k_batch_norm_act
    from fastgan.kernels import bce_with_logits as k_bce_with_logits
    from fastgan.kernels import bias_act as k_bias_act
    from fastgan.kernels import gan_loss as k_gan_loss

    for fused, kernel in ((bce_with_logits, k_bce_with_logits), (gan_loss, k_gan_loss), (bias_act, k_bias_act),
                          (batch_norm_act, k_batch_norm_act)):
        assert fused.__name__.rsplit(".", 1)[1] == kernel.__name__.rsplit(".", 1)[1]


# ---------------------------------------------------------------- fused layer: FASTGAN_BACKEND

@pytest.fixture
def fresh_backend(monkeypatch):
    """backend() recomputed from the environment this test sets, and again after it."""
    fused_backend._choose.cache_clear()
    yield monkeypatch
    fused_backend._choose.cache_clear()


def test_fused_backend_face_is_the_fused_dispatch():
    from fastgan.backend import BACKENDS, backend, describe, use_triton

    assert (BACKENDS, backend, describe, use_triton) == (fused_backend.BACKENDS, fused_backend.backend,
                                                         fused_backend.describe, fused_backend.use_triton)
    assert fg.backend is fused_backend.backend


def test_fused_backend_unknown_value_names_the_choices(fresh_backend):
    fresh_backend.setenv("FASTGAN_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"^FASTGAN_BACKEND must be one of reference, triton; got 'cuda'$"):
        fused_backend.backend()


def test_fused_backend_forced_triton_without_triton_says_how_to_get_it(fresh_backend):
    fresh_backend.setenv("FASTGAN_BACKEND", "triton")
    fresh_backend.setattr(fused_backend, "_has_triton", lambda: False)
    with pytest.raises(ImportError, match="pip install triton"):
        fused_backend.backend()


@pytest.mark.parametrize("env, cuda, has_triton, expected", [
    (None, False, True, "fused ops: reference (FASTGAN_BACKEND unset, no CUDA device)"),
    (None, True, True, "fused ops: triton (FASTGAN_BACKEND unset, CUDA present)"),
    (None, True, False, "fused ops: reference (FASTGAN_BACKEND unset, triton not installed: pip install triton)"),
    ("reference", True, True, "fused ops: reference (FASTGAN_BACKEND=reference)"),
])
def test_fused_backend_unset_falls_back_silently_and_describe_says_why(fresh_backend, env, cuda, has_triton, expected):
    if env is None:
        fresh_backend.delenv("FASTGAN_BACKEND", raising=False)
    else:
        fresh_backend.setenv("FASTGAN_BACKEND", env)
    fresh_backend.setattr(torch.cuda, "is_available", lambda: cuda)
    fresh_backend.setattr(fused_backend, "_has_triton", lambda: has_triton)
    assert fused_backend.describe() == expected
    assert fused_backend.backend() == expected.split()[2]


# -- the other layers' public names (DESIGN.md's "Public API" and command line) ----------------------


def test_data_train_and_metrics_names_of_the_design_exist():
    import inspect

    import fastgan as fg

    assert callable(fg.data.prepare) and callable(fg.data.PackedDataset)
    loader_params = inspect.signature(fg.data.Loader).parameters
    for name in ("path_or_dataset", "batch_size", "shuffle", "seed", "drop_last", "hflip", "dtype", "device",
                 "num_threads", "prefetch", "rank", "world_size"):
        assert name in loader_params, name
    assert callable(fg.train.TrainConfig) and callable(fg.train.train)
    for name in ("frechet_distance", "FeatureStats", "fid", "kid", "inception_score", "precision_recall",
                 "mode_coverage"):
        assert hasattr(fg.metrics, name), name


def test_the_command_line_has_the_design_s_five_commands():
    from fastgan.cli import COMMANDS

    assert {"train", "sample", "eval", "prepare", "bench"} <= set(COMMANDS)


def test_every_family_is_declared_once_and_builds_its_networks():
    from fastgan.train import TrainConfig
    from fastgan.train.families import FAMILIES

    assert {"dcgan", "mlp", "vae", "vaegan", "rgan", "rvae", "seqgan"} <= set(FAMILIES)
    assert len({id(f) for f in FAMILIES.values()}) == len(FAMILIES)
    shapes = {"images": (1, 16, 16), "points": (2,), "sequences": (12, 1), "tokens": (8,)}
    for declared in FAMILIES.values():
        config = TrainConfig(model=declared.name, dataset={"images": "digits", "points": "ring8",
                                                           "sequences": "sines", "tokens": "oracle"}[declared.data[0]])
        networks = declared.networks(config, shapes[declared.data[0]])
        assert declared.sampler_from(networks) is networks[declared.trainer.sampling_network]
