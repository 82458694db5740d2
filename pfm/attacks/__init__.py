"""Attacks on unlearned models: membership inference (``mia``, a registry of variants)
and adversarial prompt recovery / few-shot relearning (``recovery``, with its never-seen
reference in ``reference``). Both read the unlearn stage's saved draws (``draws``)."""

from pfm.attacks.mia import MIA_VARIANTS, MiaParams
from pfm.attacks.recovery import RecoveryParams

__all__ = ["MIA_VARIANTS", "MiaParams", "RecoveryParams"]
