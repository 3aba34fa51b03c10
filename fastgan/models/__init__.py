"""Generators and discriminators."""
from .dcgan import RESOLUTIONS as DCGAN_RESOLUTIONS
from .dcgan import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from .mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator", "init_dcgan_weights",
    "DCGAN_RESOLUTIONS",
]
