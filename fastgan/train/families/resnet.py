"""The ResNet GAN (SNGAN, Miyato et al. 2018): the GAN family's step over residual G and D."""
from __future__ import annotations

from torch import nn

from ...models import ResNetDiscriminator, ResNetGenerator
from .family import Family
from .gan import GAN_OPTIONS, UNPAIRED_G_LOSS, ConvWidths, GANTrainer, Stabilisers, num_classes


class ResNetTrainer(GANTrainer):
    """GANTrainer with SNGAN's residual networks (fastgan.models.resnet)."""

    @staticmethod
    def build_networks(config, data_shape: tuple[int, ...]) -> dict[str, nn.Module]:
        c, h, w = data_shape
        if h != w:
            raise ValueError(f"ResNet GAN needs square images; the dataset has {h}x{w}")
        k = num_classes(config)
        d = ResNetDiscriminator(h, c, config.d_width, spectral_norm=config.spectral_norm, mbstd=config.mbstd,
                                pac=config.pac, num_classes=k)
        return {"generator": ResNetGenerator(config.z_dim, h, c, config.g_width, num_classes=k), "discriminator": d}


RESNET = Family(
    "resnet", "SNGAN's residual G and D (Miyato et al. 2018) on 16, 32 or 64 px images", ("images",), ResNetTrainer,
    GAN_OPTIONS, settings=(ConvWidths, Stabilisers), fixed=UNPAIRED_G_LOSS,
    # The authors' CIFAR-10 settings: spectral norm on D, hinge loss, Adam(2e-4, 0, 0.9), 5 D updates per G update.
    defaults={"spectral_norm": True, "d_loss": "hinge", "g_loss": "hinge", "beta1": 0.0, "beta2": 0.9,
              "n_critic": 5},
    metrics="fid, kid, is, pr")
