"""The recurrent families on continuous sequences (N, T, F): RCGAN-style GAN (rgan) and VRAE (rvae).

Data: the built-in `sines` (RCGAN's random sine waves) or a user's .npy array. Samples are written as
a PNG of line plots. Evaluation compares generated and real sequences as distributions: the Fréchet
distance and KID of the raw values, and on sines the distances between the frequencies and
amplitudes of the best-fitting sine waves (fastgan.metrics.sequence_metrics).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import losses
from ..data import SequenceLoader, load_sequences, sines
from ..metrics.sequences import sequence_metrics
from ..models import VRAE, RCGANDiscriminator, RCGANGenerator
from .base import BaseTrainer
from .config import TrainConfig
from .gan import SAMPLES
from .samples import save_sequence_plots
from .vae import vae_likelihood

SINES_LENGTH = 30  # RCGAN's sine waves have 30 steps (Esteban et al. 2017, sec. 4.1)


def open_sequence_data(config: TrainConfig) -> np.ndarray:
    """The training sequences, float32 (N, T, F): the built-in sines or the user's .npy file."""
    if config.dataset == "sines":
        return sines(config.seq_n, config.seq_len or SINES_LENGTH, config.sines_features, seed=config.seed)
    data = load_sequences(config.dataset)
    if config.seq_len not in (0, data.shape[1]):
        raise ValueError(f"{config.dataset}: the sequences have {data.shape[1]} time steps but seq_len is "
                         f"{config.seq_len}; leave seq_len at 0 to use the file's length")
    return data


class SequenceVAE(nn.Module):
    """A VRAE whose forward decodes prior noise: z (N, z_dim) -> sequences (N, T, F), the means of p(x|z).

    Training goes through `elbo_terms`; forward is what a sampler is asked for, as of any generator.
    """

    def __init__(self, config: TrainConfig, data_shape: tuple[int, ...]):
        super().__init__()
        self.length, features = data_shape
        self.vrae = VRAE(features, config.seq_hidden, config.z_dim, vae_likelihood(config, "sequences"),
                         config.vae_sigma, config.vae_beta)

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.vrae.elbo_terms(x, generator, eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vrae.to_values(self.vrae.decode(z, self.length))


class SequenceFamilyTrainer(BaseTrainer):
    """What the sequence families share: data, the loader (resumable by batch count), line-plot samples from
    fixed noise, and evaluation (sequence_metrics) of the sampling network's EMA."""

    sample_kind = "sequences"
    #: the network whose EMA (or itself, without EMA) maps noise to sequences
    sampling_network = ""

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        self.data = open_sequence_data(config)
        # Recorded in the run's config, so that samplers know the length without the data.
        config.seq_len = self.data.shape[1]
        self.data_shape = tuple(self.data.shape[1:])
        self.loader = SequenceLoader(self.data, config.batch_size, config.seed, self.dist.rank,
                                     self.dist.world_size, self.device)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """What the sampling network maps to n sequences."""
        raise NotImplementedError

    def real_batches(self):
        return self.loader.batches(self.batches_seen)

    def sampler(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.networks[self.sampling_network]

    @torch.no_grad()
    def _generate(self, n: int, seed: int) -> torch.Tensor:
        g = self.sampler()
        was_training = g.training
        g.eval()
        z = self.noise(n, torch.Generator().manual_seed(seed)).to(self.device)
        out = torch.cat([g(chunk) for chunk in z.split(1000)])
        g.train(was_training)
        return out

    def write_samples(self, run_dir: Path) -> None:
        sequences = self._generate(self.config.n_samples, self.config.seed + 1)
        save_sequence_plots(sequences, run_dir / SAMPLES)
        (run_dir / "samples").mkdir(exist_ok=True)
        save_sequence_plots(sequences, run_dir / "samples" / f"step{self.step:07d}.png")

    def evaluate(self, seed: int | None = None) -> dict[str, float]:
        """sequence_metrics of config.eval_n generated sequences against as many training sequences, both
        drawn with `seed` (default: the run's seed, as during training), and "n", the number scored: at most
        the size of the training set."""
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        n = min(cfg.eval_n, len(self.data))
        real = torch.from_numpy(self.data[np.random.default_rng(seed).choice(len(self.data), n, replace=False)])
        return {"n": n, **sequence_metrics(real, self._generate(n, seed).float(), cfg.dataset == "sines", seed)}


class RGANTrainer(SequenceFamilyTrainer):
    """RCGAN (Esteban et al. 2017): an LSTM G fed fresh noise at every step, an LSTM D; n_critic D updates,
    then one G update, with fastgan.losses' d_loss / g_loss over every step's logit (or the sequence's)."""

    sampling_network = "generator"

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        peak = float(np.abs(self.data).max())
        if config.rgan_out_act == "tanh" and peak > 1:
            raise ValueError(f"{config.dataset}: values reach {peak:.4g}, beyond the tanh output of rgan's "
                             f"generator; scale the data into [-1, 1] or pass --rgan-out-act linear")
        torch.manual_seed(config.seed)
        networks = self.build_networks(config, self.data_shape)
        self.generator = self.add_network("generator", networks["generator"], config.lr_g)
        self.discriminator = self.add_network("discriminator", networks["discriminator"], config.lr_d)
        self.add_ema(self.sampling_network)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.data_shape[0], self.config.z_dim, generator=generator, device=generator.device)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        cfg = self.config
        for i in range(cfg.n_critic):
            real = next(batches)
            self.batches_seen += 1
            z = self.shared_noise(cfg.batch_size, self.data_shape[0], cfg.z_dim)
            with self.autocast(), torch.set_grad_enabled(i == cfg.n_critic - 1):
                fake = self.generator(z)
            with self.autocast():
                real_logits, fake_logits = self.discriminator(real), self.discriminator(fake.detach())
            d_loss = losses.d_loss(real_logits.float().flatten(), fake_logits.float().flatten(), cfg.d_loss,
                                   cfg.label_smoothing)
            self.update("discriminator", d_loss)
        with self.autocast():
            fake_logits = self.discriminator(fake)
        g_loss = losses.g_loss(fake_logits.float().flatten(), cfg.g_loss)
        self.update("generator", g_loss)
        self.end_step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "real_logit": real_logits.detach().float().mean(), "fake_logit": fake_logits.detach().float().mean()}

    def samples_per_step(self) -> int:
        return self.config.batch_size * self.config.n_critic * self.dist.world_size

    @staticmethod
    def sampler_from(networks: dict[str, nn.Module]) -> nn.Module:
        return networks["generator"]

    @staticmethod
    def build_networks(config: TrainConfig, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        features = data_shape[1]
        return {"generator": RCGANGenerator(features, config.z_dim, config.seq_hidden, out_act=config.rgan_out_act),
                "discriminator": RCGANDiscriminator(features, config.seq_hidden, per_step=config.rgan_per_step)}


class RVAETrainer(SequenceFamilyTrainer):
    """VRAE (Fabius & van Amersfoort 2014): one Adam update (lr_g) per batch on the negative ELBO (with beta)."""

    sampling_network = "vrae"

    def __init__(self, config: TrainConfig, dist=None):
        super().__init__(config, dist)
        low, high = float(self.data.min()), float(self.data.max())
        if vae_likelihood(config, "sequences") == "bernoulli" and (low < 0 or high > 1):
            raise ValueError(f"{config.dataset}: values span [{low:.4g}, {high:.4g}]; the bernoulli likelihood needs "
                             f"values in [0, 1] (use --vae-likelihood gaussian)")
        torch.manual_seed(config.seed)
        self.vrae = self.add_network("vrae", self.build_networks(config, self.data_shape)["vrae"], config.lr_g)
        self.add_ema(self.sampling_network)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=generator, device=generator.device)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        x = next(batches)
        self.batches_seen += 1
        with self.autocast():
            terms = self.vrae.elbo_terms(x, eps=self.shared_noise(len(x), self.config.z_dim))
        recon, kl = terms["recon"].float(), terms["kl"].float()
        self.update("vrae", terms["loss"].float())
        self.end_step()
        # The ELBO itself (beta = 1), in nats per sequence, whatever beta the loss weighs the KL with.
        return {"elbo": -(recon + kl).detach(), "recon": recon.detach(), "kl": kl.detach()}

    @staticmethod
    def sampler_from(networks: dict[str, nn.Module]) -> nn.Module:
        return networks["vrae"]

    @staticmethod
    def build_networks(config: TrainConfig, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        return {"vrae": SequenceVAE(config, data_shape)}
