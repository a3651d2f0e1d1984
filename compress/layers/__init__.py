"""Every block of the paper, written once. Importing this package registers each block's layer tokens (ops.py)."""

from .bottleneck import ResNetBottleneck, ShuffleBottleneck
from .depthwise import DepthwiseSeparable, depthwise3x3
from .dice import DiCE, DiCEBottleneck, StridedDiCE
from .factorized import FactorizedConv
from .fire import Fire, ResidualFire
from .ghost import GhostBottleneck, GhostModule
from .inverted import InvertedResidual
from .ops import build_ops, make_act, register_conv
from .residual import Discarded, RemovedBlock, Residual, projection
from .se import SqueezeExcite
from .shuffle import ChannelShuffle, grouped_pointwise, pointwise_groups

__all__ = [
    "ChannelShuffle", "DepthwiseSeparable", "DiCE", "DiCEBottleneck", "Discarded", "FactorizedConv", "Fire",
    "GhostBottleneck", "GhostModule", "InvertedResidual", "RemovedBlock", "ResNetBottleneck", "Residual", "ResidualFire",
    "ShuffleBottleneck", "SqueezeExcite", "StridedDiCE", "build_ops", "depthwise3x3", "grouped_pointwise",
    "make_act", "pointwise_groups", "projection", "register_conv",
]
