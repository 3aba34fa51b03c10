"""Every model family, declared once (fastgan.train.families.family.Family) and registered here.

Adding a family: a module beside these with its trainer and its `Family`, and one line below.
"""
from __future__ import annotations

from .family import OPTIONAL_FIELDS, Family
from .gan import DCGAN, MLP, GANTrainer, build_models
from .r3gan import R3GAN, R3GANTrainer
from .resnet import RESNET, ResNetTrainer
from .rgan import RGAN, RGANTrainer
from .seqgan import SEQGAN, SeqGANTrainer
from .timegan import TIMEGAN, TimeGANTrainer
from .vae import RVAE, VAE_FAMILY, SequenceVAETrainer, VAETrainer
from .vaegan import VAEGAN_FAMILY, VAEGANTrainer

#: --model value -> its declaration, in the order --help lists them
FAMILIES: dict[str, Family] = {f.name: f for f in (DCGAN, RESNET, R3GAN, MLP, VAE_FAMILY, VAEGAN_FAMILY, RGAN, RVAE,
                                                   TIMEGAN, SEQGAN)}
MODELS = tuple(FAMILIES)


def family(model: str) -> Family:
    """The declaration of --model `model`, or a ValueError naming the choices."""
    try:
        return FAMILIES[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}") from None


__all__ = ["FAMILIES", "MODELS", "OPTIONAL_FIELDS", "Family", "family", "GANTrainer", "R3GANTrainer", "ResNetTrainer",
           "RGANTrainer", "SeqGANTrainer", "TimeGANTrainer",
           "VAETrainer", "SequenceVAETrainer", "VAEGANTrainer", "build_models"]
