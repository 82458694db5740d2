"""Unlearning methods: one file per method, one registry, one runner.

Importing this package registers every method (``METHODS``, each a function of one
``Request``); ``unlearn`` runs one on a copy of a model and returns the unlearned model
with its ``CostRecord``; ``pfm.unlearn.suite`` runs the forget-k benchmark of
methods on one dataset.
"""

from pfm.unlearn import (  # noqa: F401  (fill the registry)
    finetune,
    grad_ascent,
    grad_ascent_kl,
    grad_diff,
    pi_prefix,
    prompt_forget,
    prompt_head_forget,
    random_label,
    retrain,
    salun,
    scrub,
    ssd,
)
from pfm.unlearn.base import METHODS, Method, Request
from pfm.unlearn.run import UnlearnParams, read_params, unlearn, unlearn_params, unlearner

__all__ = [
    "METHODS",
    "Method",
    "Request",
    "UnlearnParams",
    "read_params",
    "unlearn",
    "unlearn_params",
    "unlearner",
]
