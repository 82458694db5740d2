"""The registry of modalities (``base``); importing this package registers each, one file
per modality."""

from pfm.data.modalities import audio, image, text  # noqa: F401  (registry)
from pfm.data.modalities.base import MODALITIES, Modality, ModalityName, modality_of

__all__ = ["MODALITIES", "Modality", "ModalityName", "modality_of"]
