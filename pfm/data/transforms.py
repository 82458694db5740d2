"""Turning stored inputs into backbone input, one batch at a time.

Images are converted per batch rather than once per dataset because MedMNIST at 224 px
would need gigabytes as float tensors. The recipe follows the authors' code: grey images
repeated to three channels, values scaled to [0, 1] then normalised with mean = std = 0.5.
Audio features are already normalised log-mel frames (``pfm.data.audio_features``); a
batch only becomes float32 at the backbone's frame count. Token sequences are ids and
their mask, already padded by prepare to the dataset's longest row; a batch only becomes
int64 (what embedding lookups take).
"""

import torch
import torch.nn.functional as F


def to_pixel_values(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) uint8 → (B, 3, size, size) float in [-1, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"expected (B, H, W, C) uint8 images, got {images.dtype} {tuple(images.shape)}"
        )
    x = images.permute(0, 3, 1, 2).float() / 255.0  # (B, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5


def to_input_values(features: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T, M) normalised features → (B, frames, M) float32, cropped or zero-padded at
    the end. AST's position embeddings fix its frame count, so a clip stored longer than
    the backbone takes loses its tail; padding uses 0, the normalised train mean, which is
    also how prepare pads short clips (``pfm.data.audio_features.pad_frames``)."""
    if not features.is_floating_point() or features.ndim != 3:
        raise ValueError(
            f"expected (B, frames, mel) float features, got {features.dtype} "
            f"{tuple(features.shape)}"
        )
    x = features[:, :frames].float()
    if x.shape[1] < frames:
        x = F.pad(x, (0, 0, 0, frames - x.shape[1]))
    return x


def to_token_inputs(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 2, T) int token ids and mask → (B, 2, min(T, length)) int64. Prepare pads to the
    dataset's longest row, not to the backbone's ``length`` (512 positions for BERT), so a
    batch is never padded here, only cut where it would exceed the position table."""
    if tokens.is_floating_point() or tokens.ndim != 3 or tokens.shape[1] != 2:
        raise ValueError(
            f"expected (B, 2, T) integer token ids and mask, got {tokens.dtype} "
            f"{tuple(tokens.shape)}"
        )
    return tokens[:, :, :length].long()
