"""A causal language model's own answer as the classifier (``model.head: answers``).

PI-Prefix's authors score a fine-tuned language model by the word it writes after the
text; pfm's default head is a new linear layer on the last token. With ``answers`` the
head is the language model's output layer cut to one token per class, the first token of
the class's answer word (``pfm.data.tokens.answer_tokens``), and stays frozen as QLoRA
keeps ``lm_head``: the logit of class c is the logit the model gives that token as the
next one, so a prediction is the class word the model would write, among the class words.
It reads what the output layer reads: the last real token after the final norm.
What still differs from the authors': the softmax runs over the C class words, not the
whole vocabulary, so no model answers with a word outside the task (their random labels
``neutral`` and ``unknown``; their scorer drops rows that name no class word).
"""

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PretrainedConfig

HEADS = ("linear", "answers")  # a new linear layer | the language model's answer words


def check_next_token_readout(config: PretrainedConfig, readout: str, final_layernorm: bool) -> None:
    """Refuse features that are not what the output layer reads (another readout than
    ``last``, or before the final norm) and an output layer that is not the tied input
    embedding (a decoder loads without its own)."""
    if readout != "last" or not final_layernorm:
        raise ValueError(
            "model.head: answers reads the next-token logits: it needs readout last and "
            f"final_layernorm true, got readout {readout!r}, final_layernorm {final_layernorm}"
        )
    if not getattr(config, "tie_word_embeddings", False):
        raise ValueError(
            "model.head: answers needs an output layer tied to the input embedding; "
            f"this {config.model_type} model loads without its own"
        )


def answer_head(
    model: nn.Module, answers: Sequence[int], readout: str, final_layernorm: bool
) -> nn.Linear:
    """The frozen head whose row c is ``model``'s output-layer row (its tied input
    embedding, as SmolLM2's) of token ``answers[c]``, zero bias (a language model's output
    layer has none). Refuses what ``check_next_token_readout`` does and two classes
    answered by one token."""
    check_next_token_readout(model.config, readout, final_layernorm)
    shared = sorted({t for t in answers if list(answers).count(t) > 1})
    if shared:
        classes = [c for c, t in enumerate(answers) if t in shared]
        raise ValueError(
            f"classes {classes} share answer token(s) {shared}: their logits would be equal"
        )
    embedding = model.get_input_embeddings().weight
    head = nn.Linear(embedding.shape[1], len(answers))
    with torch.no_grad():
        head.weight.copy_(embedding[list(answers)])
        head.bias.zero_()
    return head.requires_grad_(False)
