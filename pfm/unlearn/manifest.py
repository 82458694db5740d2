"""The saved unlearned models of one (dataset, method, seed) and the manifest naming them.

Contract (read by the attacks): the folder holds one checkpoint per forget set it was
evaluated on (``pfm.models.checkpoint`` format) and ``manifest.json``:
``{"dataset", "method", "seed", "base_model": path of the model unlearning started from,
"draws": [{"k", "classes", "model": file name inside the folder}, ...]}``.
"""

from pathlib import Path
from typing import Any

from pfm.cost import CostRecord
from pfm.evaluate import Unlearner
from pfm.files import read_json, write_json
from pfm.models.checkpoint import save_model
from pfm.models.prompted import PromptedClassifier

MANIFEST_FILE = "manifest.json"


def run_folder(root: Path, method: str, seed: int) -> Path:
    """``<root>/<method>/seed<s>``: one (method, seed) below a dataset's folder — its
    unlearned models, or with ``.json`` its metrics file (the layout ``pfm.reporting.aggregate``
    reads)."""
    return root / method / f"seed{seed}"


def draw_file(classes: tuple[int, ...]) -> str:
    """``k2-3-7.pt`` for forgetting classes (3, 7)."""
    return f"k{len(classes)}-" + "-".join(str(c) for c in classes) + ".pt"


def draw_entry(classes: tuple[int, ...]) -> dict[str, Any]:
    """The manifest's record of the model saved for forgetting ``classes``."""
    return {"k": len(classes), "classes": list(classes), "model": draw_file(classes)}


def keeping(unlearn: Unlearner, folder: Path, draws: list[dict[str, Any]]) -> Unlearner:
    """``unlearn`` that also saves each model it returns into ``folder`` and appends its
    manifest entry to ``draws``."""

    def run(classes: tuple[int, ...]) -> tuple[PromptedClassifier, CostRecord]:
        model, cost = unlearn(classes)
        save_model(model, folder / draw_file(classes))
        draws.append(draw_entry(classes))
        return model, cost

    return run


def write_manifest(
    folder: Path, dataset: str, method: str, seed: int, base_model: Path, draws: list[dict]
) -> None:
    write_json(folder / MANIFEST_FILE, {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "base_model": str(base_model),
        "draws": draws,
    })  # fmt: skip


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of ``folder``, with every listed model file checked to exist."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no unlearned-model manifest {path}; run the unlearn stage")
    manifest = read_json(path)
    missing = [d["model"] for d in manifest["draws"] if not (path.parent / d["model"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lists model file(s) {missing} that are not there")
    return manifest
