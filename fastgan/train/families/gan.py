"""The GAN family (MLP GAN, DCGAN): alternating D and G updates with the stability toolkit, unconditional or
class-conditional (--conditional: G and D read each sample's label)."""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ... import losses
from ...models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from ...nn import DIFF_AUGMENT_POLICIES, diff_augment, instance_noise, instance_noise_std
from ..base import SAMPLES, BaseTrainer
from ..kinds import IMAGES
from .family import Family
from .settings import setting


@dataclass
class ConvWidths:
    """The widths of DCGAN's and the ResNet's G and D."""

    g_width: int = setting(32, "DCGAN: channels of G's last hidden block (doubling toward 4x4); resnet: of every G "
                               "block at 16 and 32 px, of the last at 64 px (halving from 16x at 4x4)", at_least=1)
    d_width: int = setting(32, "DCGAN: channels of D's first block (doubling toward 4x4); resnet: of every D block at "
                               "16 and 32 px, of the first at 64 px (doubling to 16x)", at_least=1)


@dataclass
class MLPWidths:
    """The hidden layers of the MLP GAN."""

    mlp_hidden: tuple[int, ...] = setting((256, 256), "hidden layer widths of G and D, comma-separated", at_least=1)

    def check(self, bad) -> None:
        if not self.mlp_hidden:
            bad("mlp_hidden", "must be one or more positive widths")


@dataclass
class Stabilisers:
    """The GAN stability toolkit (fastgan.nn): regularisers of D and what D sees."""

    spectral_norm: bool = setting(False, "spectral normalisation of every D weight (Miyato et al. 2018); drops D's "
                                         "batch norm; resnet: on unless --no-spectral-norm")
    mbstd: bool = setting(False, "minibatch standard deviation feature before D's last layer (Karras et al. 2018)")
    pac: int = setting(1, "PacGAN: D judges this many samples packed together (Lin et al. 2018); the batch_size "
                          "samples form batch_size / pac packs (pac divides batch_size) unless --pac-fresh",
                       at_least=1)
    pac_fresh: bool = setting(False, "PacGAN as its authors' code does it: D judges batch_size packs of pac fresh "
                                     "samples each, so a step draws batch_size * pac real and generated samples")
    diffaug: str = setting("", "DiffAugment policy for D's real and fake inputs, e.g. color,translation,cutout (Zhao "
                               "et al. 2020)")
    instance_noise: float = setting(0.0, "std of Gaussian noise added to D's inputs, annealed linearly to 0 over "
                                         "the run", at_least=0)
    r1_gamma: float = setting(0.0, "R1 penalty weight gamma (0: off); applied lazily every r1_every steps",
                              at_least=0)
    r1_every: int = setting(16, "steps between lazy R1 penalties (the penalty is scaled by this)", at_least=1)
    gp_weight: float = setting(0.0, "WGAN-GP gradient penalty weight (0: off)", at_least=0)

    def check(self, bad) -> None:
        if self.batch_size % self.pac and not self.pac_fresh:
            bad("pac", f"must divide batch_size ({self.batch_size})")
        if self.conditional and self.pac != 1:
            bad("pac", "must be 1 with conditional: D judges each sample against its own label")
        unknown = set(filter(None, self.diffaug.split(","))) - set(DIFF_AUGMENT_POLICIES)
        if unknown:
            bad("diffaug", f"policies are comma-separated names from {', '.join(DIFF_AUGMENT_POLICIES)}")


def num_classes(config) -> int:
    """The classes a run's networks are built for: config.num_classes for a conditional run, else 0."""
    return config.num_classes if config.conditional else 0


def build_models(config, data_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """G and D for data of shape (C, H, W) or (2,) (points in the plane)."""
    k = num_classes(config)
    d_options = dict(spectral_norm=config.spectral_norm, mbstd=config.mbstd, pac=config.pac, num_classes=k)
    if len(data_shape) == 1:
        g = MLPGenerator(config.z_dim, config.mlp_hidden, data_shape, out_act="linear", num_classes=k)
        return g, MLPDiscriminator(data_shape, config.mlp_hidden, **d_options)
    if config.model == "mlp":
        return (MLPGenerator(config.z_dim, config.mlp_hidden, data_shape, num_classes=k),
                MLPDiscriminator(data_shape, config.mlp_hidden, **d_options))
    c, h, w = data_shape
    if h != w:
        raise ValueError(f"DCGAN needs square images; the dataset has {h}x{w}")
    return (DCGANGenerator(config.z_dim, h, c, config.g_width, num_classes=k),
            DCGANDiscriminator(h, c, config.d_width, **d_options))


def class_count(config, data) -> int:
    """The number of classes of a conditional run on `data`: its largest label + 1, or config.num_classes when
    given; a ValueError saying what to do when the data has no labels or a label does not fit."""
    labels = getattr(data, "labels", None)
    if labels is None:
        raise ValueError(f"--conditional needs class labels and {config.dataset} has none: train on labelled data "
                         f"(digits, or a .fgd that `fastgan prepare` made from a folder with a subfolder per class, "
                         f"CIFAR-10, MNIST or an .npz with labels), or drop --conditional")
    if len(labels) == 0 or labels.min() < 0:
        raise ValueError(f"{config.dataset}: class labels must be 0 or more for --conditional; the smallest is "
                         f"{labels.min() if len(labels) else 'missing (no images)'}")
    found = int(labels.max()) + 1
    if config.num_classes and config.num_classes < found:
        raise ValueError(f"{config.dataset}: labels go up to {found - 1}, beyond --num-classes {config.num_classes}; "
                         f"pass --num-classes {found} or more, or 0 to take it from the data")
    return config.num_classes or found


def grid_labels(n: int, classes: int) -> torch.Tensor:
    """Labels of a conditional sample grid: max(1, n // classes) samples of each class, class by class, so that a
    grid of that many columns has one class per row."""
    return torch.arange(classes).repeat_interleave(max(1, n // classes))


class GANTrainer(BaseTrainer):
    """n_critic D updates, then one G update; EMA of G; R1 / WGAN-GP; DiffAugment, instance noise, PacGAN,
    spectral norm and minibatch std on D."""

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        if config.conditional:
            # Recorded in the run's config, so that samplers and evaluations build the same networks.
            config.num_classes = class_count(config, self.data)
        torch.manual_seed(config.seed)
        networks = self.build_networks(config, self.data_shape)
        g, d = networks["generator"], networks["discriminator"]
        if config.sync_bn and self.dist.world_size > 1:
            if self.device.type != "cuda":
                raise ValueError("sync_bn: torch's SyncBatchNorm synchronises CUDA tensors only; this run is on "
                                 f"{self.device}")
            from ..distributed import convert_sync_batchnorm

            g, d = convert_sync_batchnorm(g), convert_sync_batchnorm(d)
        self.generator = self.add_network("generator", g, config.lr_g)
        self.discriminator = self.add_network("discriminator", d, config.lr_d)
        self.add_ema("generator")
        # Compiled callables share parameters with the eager modules; the eager D serves R1 and
        # WGAN-GP, whose double backward torch.compile does not support.
        self.g_fwd, self.d_fwd = self.compiled(self.generator), self.compiled(self.discriminator)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        g, d = build_models(config, data_shape)
        return {"generator": g, "discriminator": d}

    @property
    def _packs_of_fresh(self) -> int:
        """Loader batches per D input: pac with --pac-fresh (PacGAN's code: batch_size packs of pac samples), else 1
        (the batch_size samples form batch_size / pac packs)."""
        return self.config.pac if self.config.pac_fresh else 1

    def _noise(self) -> torch.Tensor:
        return self.shared_noise(self.config.batch_size * self._packs_of_fresh, self.config.z_dim)

    def real_batches(self):
        """Images, or with --conditional (images, labels) pairs."""
        return self.data.labelled_batches(self) if self.config.conditional else super().real_batches()

    def _real(self, batches) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(real images, what G and D are conditioned on: () or (labels,))."""
        k = self._packs_of_fresh
        self.batches_seen += k
        if self.config.conditional:  # pac is 1 (TrainConfig checks), so k is 1
            images, labels = next(batches)
            return images, (labels,)
        return (next(batches) if k == 1 else torch.cat([next(batches) for _ in range(k)])), ()

    def _d_input(self, x: torch.Tensor, std: float) -> torch.Tensor:
        """What D sees of a real or fake batch: augmented and noised the same way for both."""
        if self.config.diffaug:
            x = diff_augment(x, self.config.diffaug, generator=self.rank_rng)
        if std > 0:
            x = instance_noise(x, std, generator=self.rank_rng)
        return x

    # -- one step -----------------------------------------------------------------------------

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        """n_critic D updates, then one G update on the last D update's fake batch. A conditional run's fake
        batch takes the real batch's labels: the data's class frequencies, and each class in equal numbers on
        both sides of D."""
        cfg = self.config
        r1_now = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        std = instance_noise_std(self.step, cfg.steps, cfg.instance_noise) if cfg.instance_noise else 0.0
        for i in range(cfg.n_critic):
            real, cond = self._real(batches)
            last = i == cfg.n_critic - 1
            with self.autocast(), (contextlib.nullcontext() if last else torch.no_grad()):
                fake = self.g_fwd(self._noise(), *cond)
            d_stats = self._d_update(real, fake.detach(), cond, r1_now and i == 0, std)
        g_stats = self._g_update(fake, cond, std)
        self.end_step()
        return {**d_stats, **g_stats}

    def _d_update(self, real, fake, cond: tuple, with_r1: bool, std: float) -> dict[str, torch.Tensor]:
        cfg = self.config
        real, fake = self._d_input(real, std), self._d_input(fake, std)
        if with_r1:
            # R1 differentiates D at exactly what D judged (the augmented real batch), as in DiffAugment's code.
            real = real.detach().requires_grad_(True)
        with self.autocast():
            real_logits = (self.discriminator if with_r1 else self.d_fwd)(real, *cond)
            fake_logits = self.d_fwd(fake, *cond)
        loss = losses.d_loss(real_logits.float(), fake_logits.float(), cfg.d_loss, cfg.label_smoothing)
        stats = {"d_loss": loss.detach(), "real_logit": real_logits.detach().float().mean(),
                 "fake_logit": fake_logits.detach().float().mean()}
        if with_r1:
            r1 = losses.r1_penalty(real_logits, real)
            loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
            stats["r1"] = r1.detach()
        if cfg.gp_weight > 0:
            with self.autocast():
                critic = functools.partial(self.discriminator, labels=cond[0]) if cond else self.discriminator
                gp = losses.gradient_penalty(critic, real.detach(), fake, generator=self.rank_rng)
            loss = loss + cfg.gp_weight * gp
            stats["gp"] = gp.detach()
        self.update("discriminator", loss)
        return stats

    def _g_update(self, fake, cond: tuple, std: float) -> dict[str, torch.Tensor]:
        with self.autocast():
            fake_logits = self.d_fwd(self._d_input(fake, std), *cond)
        loss = losses.g_loss(fake_logits.float(), self.config.g_loss)
        # Only G's gradients are wanted; D's parameters keep requires_grad (no toggling in compiled code).
        self.update("generator", loss)
        return {"g_loss": loss.detach()}

    def samples_per_step(self) -> int:
        return self.config.batch_size * self._packs_of_fresh * self.config.n_critic * self.dist.world_size

    # -- conditional samples and scores -------------------------------------------------------

    @classmethod
    def draw_samples(cls, sampler: nn.Module, config, n: int, seed: int, device,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
        """BaseTrainer.draw_samples; a conditional run's samples are of the given labels (n of them), by default
        balanced ones (fastgan.models.conditional.balanced_labels)."""
        if labels is not None and not config.conditional:
            raise ValueError(f"labels: the {config.model} run is not conditional (trained without --conditional)")
        if labels is None:
            return super().draw_samples(sampler, config, n, seed, device)
        z = torch.randn(n, *cls.noise_shape(config), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return torch.cat([sampler(zs.to(device), ys.to(device)) for zs, ys in zip(z.split(1000),
                                                                                    labels.split(1000))])

    def write_samples(self, run_dir: Path) -> None:
        """BaseTrainer.write_samples; a conditional run's grids (of images: only they have labels) have one class
        per row."""
        cfg = self.config
        if not cfg.conditional:
            return super().write_samples(run_dir)
        labels = grid_labels(cfg.n_samples, cfg.num_classes)
        g = self.sampler()
        was_training = g.training
        g.eval()
        try:
            samples = self.draw_samples(g, cfg, len(labels), cfg.seed + 1, self.device, labels)
        finally:
            g.train(was_training)
        columns = len(labels) // cfg.num_classes
        IMAGES.write(samples, run_dir / SAMPLES, nrow=columns)
        (run_dir / SAMPLES).mkdir(exist_ok=True)
        IMAGES.write(samples, run_dir / SAMPLES / f"step{self.step:07d}", nrow=columns)

    def evaluate(self, n: int | None = None, seed: int | None = None, **options) -> dict[str, float]:
        """BaseTrainer.evaluate; a conditional run's also reports class_accuracy where a classifier of its
        classes exists (fastgan.metrics.evaluate_generator's num_classes)."""
        if self.config.conditional:
            options.setdefault("num_classes", self.config.num_classes)
        return super().evaluate(n, seed, **options)


#: the shared options (family.OPTIONAL_FIELDS) the GAN trainer honours
GAN_OPTIONS = frozenset({"conditional", "compile", "sync_bn"})
#: the G losses of a G step that scores generated samples alone (RpGAN's pairs each with a real one)
UNPAIRED_G_LOSS = {"g_loss": (tuple(k for k in losses.G_LOSS_KINDS if k != "rpgan"),
                              "its G step scores generated samples alone; RpGAN's G loss trains with --model r3gan")}
DCGAN = Family("dcgan", "DCGAN (Radford et al. 2016) on images", ("images",), GANTrainer, GAN_OPTIONS,
               settings=(ConvWidths, Stabilisers), fixed=UNPAIRED_G_LOSS, metrics="fid, kid, is, pr")
MLP = Family("mlp", "fully connected G and D, on 2D points or images", ("points", "images"), GANTrainer,
             GAN_OPTIONS, settings=(MLPWidths, Stabilisers), fixed=UNPAIRED_G_LOSS,
             metrics="fid, kid, pr, modes (points); fid, kid, is, pr (images)")
