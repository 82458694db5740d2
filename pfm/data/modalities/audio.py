"""Audio: normalised log-mel features, float (N, frames, mel bins) (``pfm.data.audio_features``)."""

import numpy as np
import torch

from pfm.data.modalities.base import MODALITIES, Modality
from pfm.data.transforms import to_input_values


def holds(inputs: np.ndarray) -> bool:
    return inputs.dtype in (np.float16, np.float32) and inputs.ndim == 3


def gaussian_features(
    _like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Features drawn like normalised ones: N(0, 0.5²), the AST recipe ``pfm.data`` follows."""
    return (0.5 * torch.randn(shape, generator=generator)).to(torch.float16).numpy()


def uniform_features(
    _like: np.ndarray, shape: tuple[int, ...], generator: torch.Generator
) -> np.ndarray:
    """Uniform on [−1, 1]: another law than ``gaussian_features``."""
    return (2 * torch.rand(shape, generator=generator) - 1).to(torch.float16).numpy()


AUDIO = MODALITIES.register("audio")(
    Modality(
        layout="float features (N, frames, mel)",
        holds=holds,
        to_encoder=to_input_values,
        noise=gaussian_features,
        probe=uniform_features,
        backbone_param="audio_backbone",
    )
)
