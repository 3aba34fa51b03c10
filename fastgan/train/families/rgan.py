"""The recurrent GAN on continuous sequences (N, T, F): RCGAN (Esteban et al. 2017).

Data: the built-in `sines` (RCGAN's random sine waves) or a user's .npy array. Samples are written as a
PNG of line plots; evaluation is fastgan.metrics.sequence_metrics (BaseTrainer.evaluate).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...models import RCGANDiscriminator, RCGANGenerator
from ...models.recurrent import NOISE_KINDS, OUTPUT_ACTS
from ..base import BaseTrainer
from .family import Family
from .gan import UNPAIRED_G_LOSS
from .sequences import SequenceSettings, SinesSettings
from .settings import setting


@dataclass
class RGANSettings:
    """RCGAN's networks and noise."""

    rgan_per_step: bool = setting(True, "D judges every time step (RCGAN); otherwise the whole sequence")
    rgan_out_act: str = setting("tanh", "G's output activation; tanh needs data in [-1, 1], sigmoid in [0, 1] "
                                        "(sines-timegan)", OUTPUT_ACTS)
    rgan_noise: str = setting("step", "G's noise: fresh z_dim numbers at every step (RCGAN), or one z per sequence "
                                      "given at every step (smooth steps; see docs/results.md)", NOISE_KINDS)
    rgan_layers: int = setting(1, "stacked LSTM layers of G and of D (RCGAN: 1; TimeGAN: 3)", at_least=1)
    rgan_moment_weight: float = setting(0.0, "weight of TimeGAN's moment loss in G's loss: |std| and |mean| "
                                             "differences of generated and real batches per step and feature "
                                             "(TimeGAN: 100; 0: off)", at_least=0)


def moment_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """TimeGAN's G_loss_V (Yoon et al. 2019, its code): mean |std| plus mean |mean| difference of the generated and
    real batches (N, T, F), both taken over the batch for every step and feature. It pins each step's marginal,
    which the per-step adversarial signal alone leaves loose (generated values beyond the data's range)."""
    def std(x):
        return torch.sqrt(x.var(dim=0, unbiased=False) + 1e-6)

    return (std(fake) - std(real)).abs().mean() + (fake.mean(dim=0) - real.mean(dim=0)).abs().mean()


class RGANTrainer(BaseTrainer):
    """An LSTM G fed fresh noise at every step (or one noise vector per sequence), an LSTM D; n_critic D updates,
    then one G update, with fastgan.losses' d_loss / g_loss over every step's logit (or the sequence's)."""

    def __init__(self, config, dist=None):
        super().__init__(config, dist)
        low, high = float(self.data.array.min()), float(self.data.array.max())
        need = {"tanh": (-1, 1), "sigmoid": (0, 1)}.get(config.rgan_out_act)
        if need and (low < need[0] or high > need[1]):
            beyond = low if low < need[0] else high
            raise ValueError(f"{config.dataset}: values reach {beyond:.4g}, beyond the {config.rgan_out_act} output "
                             f"[{need[0]}, {need[1]}] of rgan's generator; scale the data into it or pass "
                             f"--rgan-out-act linear")
        torch.manual_seed(config.seed)
        networks = self.build_networks(config, self.data_shape)
        self.generator = self.add_network("generator", networks["generator"], config.lr_g)
        self.discriminator = self.add_network("discriminator", networks["discriminator"], config.lr_d)
        self.add_ema(self.sampling_network)

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        features = data_shape[1]
        return {"generator": RCGANGenerator(features, config.z_dim, config.seq_hidden, config.rgan_layers,
                                            out_act=config.rgan_out_act, noise=config.rgan_noise),
                "discriminator": RCGANDiscriminator(features, config.seq_hidden, config.rgan_layers,
                                                    per_step=config.rgan_per_step)}

    @staticmethod
    def noise_shape(config) -> tuple[int, ...]:
        # Noise for every time step (RCGAN), so the noise has the sequence's length; with rgan_noise "sequence"
        # G reads the first step's alone.
        return (config.seq_len, config.z_dim)

    def train_step(self, batches) -> dict[str, torch.Tensor]:
        cfg = self.config
        for i in range(cfg.n_critic):
            real = next(batches)
            self.batches_seen += 1
            z = self.shared_noise(cfg.batch_size, *self.noise_shape(cfg))
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
        stats = {}
        if cfg.rgan_moment_weight:
            stats["moment_loss"] = moment_loss(real.float(), fake.float())
            g_loss = g_loss + cfg.rgan_moment_weight * stats["moment_loss"]
        self.update("generator", g_loss)
        self.end_step()
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "real_logit": real_logits.detach().float().mean(), "fake_logit": fake_logits.detach().float().mean(),
                **{name: value.detach() for name, value in stats.items()}}

    def samples_per_step(self) -> int:
        return self.config.batch_size * self.config.n_critic * self.dist.world_size


RGAN = Family("rgan", "recurrent GAN on sequences (RCGAN, Esteban et al. 2017)", ("sequences",), RGANTrainer,
              settings=(SequenceSettings, SinesSettings, RGANSettings), fixed=UNPAIRED_G_LOSS,
              metrics="fid, kid on the values; freq_w1, amp_w1, sine_r2 on sines; TimeGAN's "
                      "discriminative and predictive scores")
