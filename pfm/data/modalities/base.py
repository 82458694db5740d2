"""What a modality is: one declaration that every stage, batch and attack reads, so a new
kind of input (image, audio, text) is one registered ``Modality`` and no ``if`` on its
name anywhere else."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from pfm.config import OneOf
from pfm.registry import Registry

# (stored inputs the law imitates, shape of the draw, generator) → stored-layout inputs
InputLaw = Callable[[np.ndarray, tuple[int, ...], torch.Generator], np.ndarray]


@dataclass(frozen=True)
class Modality:
    """One kind of model input, from its stored array to the encoder.

    ``holds`` recognises the stored layout (``layout`` says it in words, for errors);
    ``to_encoder`` turns a stored batch into encoder input at the backbone's input length;
    ``noise`` draws the recovery attack's data-free positives and ``probe`` the
    specificity probe, of another law than ``noise`` so an attack that maps its own noise
    to a class is not credited with specificity by construction; ``backbone_param`` is the
    ``model.*`` key naming the backbone that reads it; ``resizable``: whether
    ``model.input_size`` may change its input length (image side), else the backbone's
    position embeddings fix it."""

    layout: str
    holds: Callable[[np.ndarray], bool]
    to_encoder: Callable[[torch.Tensor, int], torch.Tensor]
    noise: InputLaw
    probe: InputLaw
    backbone_param: str
    resizable: bool = False


MODALITIES: Registry[Modality] = Registry("modality")
ModalityName = Annotated[str, OneOf(MODALITIES)]


def modality_of(inputs: np.ndarray) -> str:
    """The name of the one modality whose stored layout ``inputs`` has, or an error listing
    every layout a prepared split may hold."""
    names = [name for name in MODALITIES if MODALITIES.get(name).holds(inputs)]
    if len(names) != 1:
        layouts = "; ".join(f"{n}: {MODALITIES.get(n).layout}" for n in MODALITIES)
        raise ValueError(f"inputs must be one of ({layouts}), got {inputs.dtype} {inputs.shape}")
    return names[0]
