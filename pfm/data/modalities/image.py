"""Images: uint8 (N, H, W, C) at their source resolution, resized per batch."""

import numpy as np
import torch
import torch.nn.functional as F

from pfm.data.modalities.base import MODALITIES, Modality
from pfm.data.transforms import to_pixel_values

SMOOTH_CELL = 4  # pixels per cell of the smooth noise probe's coarse grid


def holds(inputs: np.ndarray) -> bool:
    return inputs.dtype == np.uint8 and inputs.ndim == 4


def uniform_pixels(
    _like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Per-pixel uniform uint8 noise."""
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).numpy()


def smooth_pixels(
    _like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Uniform noise on a coarse grid (``SMOOTH_CELL`` px cells) upsampled bilinearly, so
    neighbouring pixels agree: another law than ``uniform_pixels``."""
    n, height, width, channels = shape
    coarse_size = (n, channels, -(-height // SMOOTH_CELL) + 1, -(-width // SMOOTH_CELL) + 1)
    coarse = 255 * torch.rand(coarse_size, generator=generator)
    fine = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    return fine.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


IMAGE = MODALITIES.register("image")(
    Modality(
        layout="uint8 images (N, H, W, C)",
        holds=holds,
        to_encoder=to_pixel_values,
        noise=uniform_pixels,
        probe=smooth_pixels,
        backbone_param="backbone",
        resizable=True,
    )
)
