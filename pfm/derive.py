"""Values params.yaml leaves out because they follow from others, filled where params are
loaded (``pfm.config.load_params``), so every reader sees one completed mapping.

A key a section sets wins; an unset one takes the value it is derived from:

- ``train_base`` (the plain model) is ``train``'s recipe except where it says otherwise:
  epochs, batch_size, lr, eval_batch_size, device and precision follow ``train``; its
  eval_modes is ``[none]`` (a model without prompts has one inference mode). prompt_lr and
  kl_weight stay unset: they are the prompt model's own.
- ``unlearn.retrain`` (exact unlearning) is the plain model's own recipe on the retained
  classes: epochs, batch_size and lr follow ``train_base``.

A section that is missing or no mapping is left as it is, for validation to name.
Imports nothing heavy: the aggregate stage loads params without torch.
"""

import copy
from collections.abc import Iterable, Mapping
from typing import Any

PLAIN_FROM_TRAIN = ("epochs", "batch_size", "lr", "eval_batch_size", "device", "precision")
PLAIN_EVAL_MODES = ["none"]
RETRAIN_FROM_PLAIN = ("epochs", "batch_size", "lr")


def _fill(target: dict[str, Any], source: Mapping[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        if key not in target and key in source:
            target[key] = copy.deepcopy(source[key])


def _block(parent: Any, name: str) -> dict[str, Any] | None:
    """``parent[name]`` as a mapping to fill in place; an unset or null block becomes an
    empty one; ``None`` where it is something else (validation names that)."""
    if not isinstance(parent, dict):
        return None
    if parent.get(name) is None:
        parent[name] = {}
    block = parent[name]
    return block if isinstance(block, dict) else None


def completed(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with every unset derived key filled (see the module doc)."""
    out = copy.deepcopy(dict(params))
    train = out.get("train")
    if not isinstance(train, dict):
        return out
    plain = _block(out, "train_base")
    if plain is not None:
        _fill(plain, train, PLAIN_FROM_TRAIN)
        plain.setdefault("eval_modes", list(PLAIN_EVAL_MODES))
        retrain = _block(out.get("unlearn"), "retrain")
        if retrain is not None:
            _fill(retrain, plain, RETRAIN_FROM_PLAIN)
    return out
