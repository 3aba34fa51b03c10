"""nn.Module front: loss modules and layers with fused epilogues."""
from .layers import BatchNormAct, BiasAct, ConvBlock, ConvTransposeBlock
from .losses import BCEWithLogitsLoss

__all__ = ["BCEWithLogitsLoss", "BiasAct", "BatchNormAct", "ConvTransposeBlock", "ConvBlock"]
