"""Generators, discriminators and the generative models GANs are used with."""
from .dcgan import RESOLUTIONS as DCGAN_RESOLUTIONS
from .dcgan import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from .mlp import MLPDiscriminator, MLPGenerator
from .r3gan import R3GANDiscriminator, R3GANGenerator
from .resnet import RESOLUTIONS as RESNET_RESOLUTIONS
from .resnet import ResNetDiscriminator, ResNetGenerator
from .recurrent import VRAE, RCGANDiscriminator, RCGANGenerator
from .seqgan import (CNNDiscriminator, LSTMDiscriminator, OracleLSTM, SeqGANGenerator, mle_loss, oracle_nll,
                     policy_gradient_loss, rollout_rewards)
from .timegan import TimeGAN
from .vae import VAE, gaussian_kl, reparameterize
from .vaegan import VAEGAN, VAEGANDiscriminator, vaegan_backward, vaegan_losses

__all__ = [
    "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator", "init_dcgan_weights",
    "DCGAN_RESOLUTIONS", "ResNetGenerator", "ResNetDiscriminator", "RESNET_RESOLUTIONS",
    "R3GANGenerator", "R3GANDiscriminator",
    "VAE", "reparameterize", "gaussian_kl",
    "VAEGAN", "VAEGANDiscriminator", "vaegan_losses", "vaegan_backward",
    "RCGANGenerator", "RCGANDiscriminator", "VRAE",
    "SeqGANGenerator", "CNNDiscriminator", "LSTMDiscriminator", "OracleLSTM", "mle_loss", "rollout_rewards",
    "policy_gradient_loss", "oracle_nll", "TimeGAN",
]
