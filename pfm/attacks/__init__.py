"""Attacks on unlearned models: membership inference (``mia``, a registry of variants)
and adversarial prompt recovery / few-shot relearning (``recovery``, under the
capabilities of ``CAPABILITIES``, each model measured against a never-seen reference of
its own family: ``reference`` and ``targets``). Both read the saved draws (``draws``)
and report per-draw ``units`` beside their pooled ``.mean``/``.std`` keys; ``benchmark``
runs both on one dataset's saved models."""

from pfm.attacks.mia import MIA_VARIANTS, MiaParams
from pfm.attacks.recovery import CAPABILITIES, RecoveryParams

__all__ = ["CAPABILITIES", "MIA_VARIANTS", "MiaParams", "RecoveryParams"]
