"""Attacks on unlearned models: membership inference (``mia``, a registry of variants)
and adversarial prompt recovery / few-shot relearning (``recovery``, under the registered
capabilities of ``CAPABILITIES``: trained ones in ``relearn``, the training-free
``prototype``; its params in ``protocol``, each model measured against a never-seen
reference of its own family: ``targets``, the prompt family's trained by
``pfm.references``). Both read the saved draws (``pfm.draws``) and report per-draw
``units`` beside their pooled ``.mean``/``.std`` keys; ``suite`` runs both on one
dataset's saved models."""

from pfm.attacks import prototype, relearn  # noqa: F401  (registers the capabilities)
from pfm.attacks.capabilities import CAPABILITIES
from pfm.attacks.mia import MIA_VARIANTS, MiaParams
from pfm.attacks.protocol import RecoveryParams

__all__ = ["CAPABILITIES", "MIA_VARIANTS", "MiaParams", "RecoveryParams"]
