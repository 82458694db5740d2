"""Saving and loading models without their frozen backbone weights.

A checkpoint holds the spec, every tensor that training or forgetting can change
(adapters, head, prompt bank, its class ids, the output mask) and a fingerprint of the
frozen weights, which are rebuilt from the spec on load; a backbone that rebuilds
differently (another seed, another pretrained file) is refused rather than silently
mixed. Anything unreadable raises ``CheckpointError`` naming the file.

Loading is ``weights_only``: a file whose pickle calls into a module (what a checkpoint
crafted to run code on load does) is refused, with a line that says so rather than
torch's advice to turn the safe loader off. Zip checkpoints have their CRCs checked
first, because torch reads tensor bytes without checking them: a damaged file would
load as a silently different model.
"""

import dataclasses
import hashlib
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from pfm.files import write_atomic
from pfm.models.adapters import LoraSpec
from pfm.models.prompted import ModelSpec, PromptedClassifier, build_model

FORMAT = "pfm-model/1"


CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ"}  # a pickle importing a callable


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, foreign or for another backbone."""


def _reason(error: BaseException) -> str:
    """The first sentence of ``error``'s message (torch appends paragraphs of advice)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text.split(". ")[0] or type(error).__name__


def _imports_callables(path: Path) -> bool:
    """Whether ``path`` is a whole pickle stream that imports a callable: a file torch
    cannot parse (a newer pickle protocol) may still be one made to run code."""
    try:
        with path.open("rb") as handle:
            names = {op.name for op, _, _ in pickletools.genops(handle)}
    except Exception:  # pickletools raises what it meets first: not a pickle stream at all
        return False
    return bool(names & CODE_OPCODES)


def _check_archive(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is a damaged archive: {error}") from None
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: {damaged} fails its CRC check")


def frozen_names(model: PromptedClassifier) -> set[str]:
    return {f"encoder.{n}" for n, p in model.encoder.named_parameters() if not p.requires_grad}


def frozen_fingerprint(model: PromptedClassifier) -> str:
    digest = hashlib.sha256()
    frozen = frozen_names(model)
    for name, tensor in sorted(model.state_dict().items()):
        if name in frozen:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_state(model: PromptedClassifier) -> dict[str, object]:
    frozen = frozen_names(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in frozen}
    return {
        "format": FORMAT,
        "spec": dataclasses.asdict(model.spec),
        "state": state,
        "fingerprint": frozen_fingerprint(model),
    }


def write_torch(path: str | Path, payload: object) -> None:
    """``torch.save`` atomically and byte-reproducibly. Given a path, torch names the
    archive's folder after the file — here the random temporary name — so the same
    weights saved twice differed in their bytes, and DVC took an identical retrained
    model for a changed one; given an open file it writes the fixed name ``archive``."""

    def save(tmp: Path) -> None:
        with tmp.open("wb") as file:
            torch.save(payload, file)

    write_atomic(path, save)


def save_model(model: PromptedClassifier, path: str | Path) -> None:
    write_torch(path, model_state(model))


def read_checkpoint(path: str | Path, expected_format: str = FORMAT) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it may not read
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error) or _imports_callables(path):
            raise CheckpointError(
                f"{path}: refused: loading it could run code (not a pfm checkpoint)"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is unreadable: not a torch checkpoint (random bytes, or a "
            f"pickle torch's safe loader cannot read)"
        ) from None
    except Exception as error:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated): {_reason(error)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise CheckpointError(f"{path} is not a {expected_format} checkpoint")
    return payload


def _spec(payload: dict, source: str | Path) -> ModelSpec:
    try:
        spec_dict = dict(payload["spec"])
        return ModelSpec(**{**spec_dict, "lora": LoraSpec(**spec_dict["lora"])})
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: its model spec is missing or foreign ({error})") from None


def read_spec(path: str | Path) -> ModelSpec:
    """What a saved model is (prompted or plain, its backbone) without building it."""
    return _spec(read_checkpoint(path), path)


def restore_model(payload: dict, source: str | Path = "<memory>") -> PromptedClassifier:
    spec = _spec(payload, source)
    state = payload.get("state")
    if not isinstance(state, dict) or "prompt_classes" not in state or "fingerprint" not in payload:
        raise CheckpointError(f"{source}: holds no model state (not a saved pfm model)")
    model = build_model(spec, seed=0)
    bank = state["prompt_classes"].shape[0]
    if bank != len(model.prompt_classes):  # a forgotten model: shrink the bank to fit
        model = model.forget(set(range(spec.num_classes)) - set(state["prompt_classes"].tolist()))
    if frozen_fingerprint(model) != payload["fingerprint"]:
        raise CheckpointError(
            f"{source}: the backbone {spec.backbone!r} rebuilt here differs from the one it was "
            f"trained with (different weights or init seed)"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in frozen_names(model)]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: state does not fit the model (missing {missing}, unexpected {unexpected})"
        )
    return model


def load_model(path: str | Path) -> PromptedClassifier:
    return restore_model(read_checkpoint(path), path)


def load_model_for(
    path: str | Path, dataset: str, num_classes: int, device: torch.device
) -> PromptedClassifier:
    """``load_model`` onto ``device``, refusing a model of another class count: the file
    of another dataset (or of an older prepare) would otherwise be evaluated silently."""
    model = load_model(path).to(device)
    if model.num_classes != num_classes:
        raise ValueError(f"{path} has {model.num_classes} classes, {dataset} has {num_classes}")
    return model
