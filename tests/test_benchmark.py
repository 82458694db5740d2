"""The throughput benchmark runs end to end on a tiny setting and prints its table; no
timing is asserted (the figures are the machine's, docs/gpu.md)."""

from pathlib import Path

import pytest

from pfm import benchmark
from pfm.benchmark import COLUMNS, main, table


def test_the_benchmark_prints_every_column_and_positive_ratios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--backbone", "vit-tiny", "--batch-size", "2", "--steps", "1", "--warmup", "0"]
    (result,) = main(args)
    header = capsys.readouterr().out.splitlines()[1]
    assert [cell.strip() for cell in header.strip("|").split("|")] == list(COLUMNS)
    assert (result.backbone, result.input_size, result.batch_size) == ("vit-tiny", 16, 2)
    assert result.tokens == 17  # CLS + 4 × 4 patches; full_bank prepends 10 prompts
    figures = (result.forward, result.forward_backward, result.train_step, result.full_bank)
    assert all(f > 0 for f in figures) and result.forget_ms > 0
    assert result.train_ratio > 0 and result.full_bank_ratio > 0
    assert table([result]).count("\n") == 2  # header, rule, one row


def test_dinov2_needs_the_converted_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark, "DINOV2_CONFIG", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="convert-dinov2"):
        main(["--backbone", "dinov2-small", "--steps", "1"])
