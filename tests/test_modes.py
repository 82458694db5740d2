"""Each inference mode on hand-built cases, with exactly the semantics DESIGN.md gives."""

import pytest
import torch

from pfm.models.prompted import PAD
from pfm.modes import MODES, mode_logits

LABELS = torch.tensor([0, 2, 3])
BANK = [0, 1, 2, 3]
C = 4


def build(
    mode: str, labels: torch.Tensor = LABELS, bank: list[int] = BANK, seed: int = 0
) -> torch.Tensor:
    builder = MODES.get(mode).build
    assert builder is not None
    return builder(labels, bank, C, torch.Generator().manual_seed(seed))


def valid(row: torch.Tensor) -> list[int]:
    return [int(c) for c in row if c != PAD]


def test_registry_names_every_mode() -> None:
    assert set(MODES) == {
        "none",
        "full_bank",
        "full_bank_shuffle",
        "match_only",
        "all_wrong",
        "random_wrong",
        "mixed_subset",
        "wrong_subset",
        "infer_best",
    }
    assert {m for m in MODES if MODES.get(m).uses_label} == {
        "match_only",
        "all_wrong",
        "random_wrong",
        "mixed_subset",
        "wrong_subset",
    }


def test_none_gives_no_prompt() -> None:
    assert build("none").shape == (3, 0)


def test_full_bank_is_the_bank_in_class_order() -> None:
    assert build("full_bank", bank=[0, 2, 3]).tolist() == [[0, 2, 3]] * 3


def test_full_bank_shuffle_permutes_each_row_independently() -> None:
    labels = torch.zeros(64, dtype=torch.long)
    ids = build("full_bank_shuffle", labels)
    assert all(sorted(row.tolist()) == BANK for row in ids)
    assert len({tuple(row.tolist()) for row in ids}) > 5  # rows differ


def test_match_only_is_the_true_prompt() -> None:
    assert build("match_only").tolist() == [[0], [2], [3]]


def test_all_wrong_is_every_other_bank_prompt_in_order() -> None:
    assert build("all_wrong").tolist() == [[1, 2, 3], [0, 1, 3], [0, 1, 2]]
    # after forgetting class 2, a class-2 sample sees the whole (smaller) bank
    ids = build("all_wrong", bank=[0, 1, 3])
    assert [valid(r) for r in ids] == [[1, 3], [0, 1, 3], [0, 1]]


def test_random_wrong_is_one_wrong_prompt() -> None:
    labels = torch.arange(4).repeat(16)
    ids = build("random_wrong", labels)
    assert ids.shape == (64, 1) and (ids[:, 0] != labels).all()
    assert len(set(ids[labels == 0, 0].tolist())) == 3  # all wrong classes get drawn


@pytest.mark.parametrize("seed", range(20))
def test_wrong_subset_has_shared_size_and_no_true_prompt(seed: int) -> None:
    labels = torch.arange(4).repeat(4)
    ids = build("wrong_subset", labels, seed=seed)
    assert ids.shape[1] <= C - 1
    for row, label in zip(ids, labels, strict=True):
        chosen = valid(row)
        assert (
            len(chosen) == ids.shape[1] and label not in chosen and len(set(chosen)) == len(chosen)
        )


@pytest.mark.parametrize("seed", range(20))
def test_mixed_subset_inserts_the_true_prompt_at_one_shared_position(seed: int) -> None:
    labels = torch.arange(4).repeat(4)
    ids = build("mixed_subset", labels, seed=seed)
    positions = {row.tolist().index(int(label)) for row, label in zip(ids, labels, strict=True)}
    assert len(positions) == 1
    for row, label in zip(ids, labels, strict=True):
        assert row.tolist().count(int(label)) == 1 and len(set(row.tolist())) == len(row)


def test_subset_sizes_cover_zero_to_c_minus_one() -> None:
    sizes = {build("wrong_subset", seed=s).shape[1] for s in range(60)}
    assert sizes == {0, 1, 2, 3}
    sizes = {build("mixed_subset", seed=s).shape[1] for s in range(60)}
    assert sizes == {1, 2, 3, 4}


def test_mixed_subset_needs_the_true_prompt() -> None:
    with pytest.raises(KeyError):
        for seed in range(20):
            build("mixed_subset", torch.tensor([2, 2]), bank=[0, 1, 3], seed=seed)


class _PromptEcho(torch.nn.Module):
    """Fake model whose logits reveal the prompts it saw: one-hot × (class + 1)."""

    num_classes = C
    bank_classes = BANK

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        logits = torch.zeros(len(x), C)
        if prompts is not None:
            for i, row in enumerate(prompts):
                for c in valid(row):
                    logits[i, c] += c + 1.0
        return logits


def test_infer_best_takes_the_elementwise_max_over_single_prompt_forwards() -> None:
    x = torch.zeros(3, 1)
    logits = mode_logits(_PromptEcho(), x, LABELS, "infer_best", torch.Generator())
    assert logits.tolist() == [[1.0, 2.0, 3.0, 4.0]] * 3  # one prompt at a time, max over them


def test_mode_logits_calls_the_model_with_the_modes_prompts() -> None:
    x = torch.zeros(3, 1)
    logits = mode_logits(_PromptEcho(), x, LABELS, "match_only", torch.Generator())
    assert logits.argmax(1).tolist() == LABELS.tolist()
