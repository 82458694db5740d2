"""``pfm_defended``: the prompt model's forget, hardened — delete the forgotten classes'
prompts AND their head rows. Beyond the paper (Hendrix et al. delete the prompt only).

Deleting a prompt leaves the class's head row, trained to read that class off the CLS
token, in the model; whatever an adversary can rebind to it is knowledge the deletion did
not remove (the recovery attack's ``prompt_head`` capability measures it). Here the row's
weights and bias are overwritten with zeros, so the saved file holds no trained byte of
either and the class's logit is the constant 0 for every input (``mask_logits`` removes
it from the argmax altogether). Still data-free and instant: no sample is read, no
gradient step taken.
"""

import torch

from pfm.models.prompted import PromptedClassifier
from pfm.unlearn.base import Request, method
from pfm.unlearn.prompt_forget import PromptForgetRecipe, prompt_forget


@torch.no_grad()
def erase_head_rows(model: PromptedClassifier, classes: tuple[int, ...]) -> None:
    """Zero the head's weight rows and bias entries of ``classes``, in place."""
    rows = torch.tensor(classes, dtype=torch.long, device=model.head.weight.device)
    model.head.weight.index_fill_(0, rows, 0.0)
    model.head.bias.index_fill_(0, rows, 0.0)


@method(
    "pfm_defended", recipe=PromptForgetRecipe, needs_forget=False, needs_retain=False,
    base="prompt", serves=("classes",),
)  # fmt: skip
def prompt_head_forget(request: Request[PromptForgetRecipe]) -> PromptedClassifier:
    forgotten = prompt_forget(request)
    erase_head_rows(forgotten, request.classes)  # the runner's private copy: input intact
    return forgotten
