"""Composable losses; see `gensr.losses.base` for the contract (weight, name, inputs)."""
from gensr.losses.adversarial import GAN_TYPES, AdversarialLoss, GradientPenalty, R1Penalty
from gensr.losses.base import WeightedLoss, build_losses
from gensr.losses.frequency import BandEnergyLoss
from gensr.losses.latent import KLLoss, L1ActivityLoss
from gensr.losses.pixel import CharbonnierLoss, L1Loss, MSELoss
from gensr.losses.ssim import SSIMLoss, ssim_map
from gensr.losses.structure import StructureTensorLoss
from gensr.losses.style import StyleLoss, gram

__all__ = [
    "GAN_TYPES",
    "AdversarialLoss",
    "BandEnergyLoss",
    "CharbonnierLoss",
    "GradientPenalty",
    "KLLoss",
    "L1ActivityLoss",
    "L1Loss",
    "MSELoss",
    "R1Penalty",
    "SSIMLoss",
    "StructureTensorLoss",
    "StyleLoss",
    "WeightedLoss",
    "build_losses",
    "gram",
    "ssim_map",
]
