"""nn.Module front: loss modules, layers with fused epilogues, and GAN stability tools."""
from .diffaugment import DIFF_AUGMENT_POLICIES, DiffAugment, diff_augment
from .layers import BatchNormAct, BiasAct, ConditionalBatchNormAct, ConvBlock, ConvTransposeBlock
from .losses import BCEWithLogitsLoss
from .stability import MinibatchStd, apply_spectral_norm, instance_noise, instance_noise_std, pack

__all__ = ["BCEWithLogitsLoss", "BiasAct", "BatchNormAct", "ConditionalBatchNormAct", "ConvTransposeBlock", "ConvBlock",
           "diff_augment", "DiffAugment", "DIFF_AUGMENT_POLICIES", "instance_noise", "instance_noise_std",
           "MinibatchStd", "pack", "apply_spectral_norm"]
