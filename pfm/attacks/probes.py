"""What the recovery adversary is handed and what it is probed with.

``AdversaryView`` is all the attacking code sees: the forgotten classes' ids, m labelled
train shots per class (none at m = 0: ``adversary_view`` then reads no forgotten-class
sample), ``anchor_shots`` labelled train samples per retained class and, at m = 0, a
stream of uniform-noise positives. The scores come from the test split, which the
adversary never sees (``pfm.attacks.harness``).

The specificity probes ask where inputs of no forgotten class go after the attack. The
noise probe is drawn from another law and another seed than the attack's own noise
(each modality declares both laws, ``pfm.data.modalities``: smooth, low-frequency images
instead of per-pixel uniform ones; uniform audio features instead of Gaussian ones;
token sequences at the data's word frequencies and lengths instead of uniform ids), so a
data-free attack that maps "its" noise to the class is not credited with specificity by
construction.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from pfm.config import NonEmpty
from pfm.data import PreparedDataset, build_dataset
from pfm.data.modalities import MODALITIES
from pfm.data.prepared import Split
from pfm.data.registry import DatasetName

PROBE_STREAM = 2  # seeds the specificity probes apart from the attack's own draws


@dataclass(frozen=True)
class AttackData:
    """What the attack reads: shots and anchors from ``train`` (the adversary's), the
    scores from ``test`` (never the adversary's; a tuning run may pass validation);
    ``ood``: another dataset's test images for ``ood_to_recovered`` (``None``: none)."""

    train: Split
    test: Split
    ood: Split | None = None


@dataclass(frozen=True)
class AdversaryView:
    """Everything the attacking code reads: no test sample, and at m = 0 (``shots``
    empty) no forgotten-class sample — only the classes' ids and noise."""

    classes: tuple[int, ...]
    shots: Split  # m labelled train samples per forgotten class; empty at m = 0
    anchors: Split  # labelled train samples of the retained classes
    noise_per_class: int  # data-free positives per class and step
    generator: torch.Generator  # the noise stream: the same for every model and seed

    def noise(self) -> Split:
        """Fresh data-free positives: ``noise_per_class`` uniform-noise inputs per class,
        labelled with it."""
        labels = np.repeat(np.array(self.classes, dtype=np.int64), self.noise_per_class)
        shape = (len(labels), *self.anchors.inputs.shape[1:])
        return Split(random_inputs(self.anchors, shape, self.generator), labels)


def adversary_view(
    train: Split,
    classes: tuple[int, ...],
    m: int,
    anchor_shots: int,
    noise_per_class: int,
    num_classes: int,
    seed: int,
) -> AdversaryView:
    """The adversary's holdings for m shots per class of ``classes``; at m = 0 the
    forgotten classes' samples are not even looked up."""
    retained = [c for c in range(num_classes) if c not in classes]
    anchors = draw_shots(train, retained, anchor_shots, seed)
    none = Split(anchors.inputs[:0], anchors.labels[:0])
    shots = draw_shots(train, classes, m, seed) if m > 0 else none
    generator = torch.Generator().manual_seed(seed + 1)
    return AdversaryView(classes, shots, anchors, noise_per_class, generator)


def draw_shots(split: Split, classes: Sequence[int], m: int, seed: int) -> Split:
    """m samples of each class in ``classes``, the first m of a permutation seeded by
    (seed, class): the same shots for every model attacked, and m = 1 ⊂ m = 5."""
    rows = []
    for c in classes:
        where = np.flatnonzero(split.labels == c)
        if len(where) < m:
            raise ValueError(f"class {c} has {len(where)} train samples, fewer than m = {m}")
        rows.append(where[np.random.default_rng([seed, int(c)]).permutation(len(where))[:m]])
    picked = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    return Split(split.inputs[picked], split.labels[picked])


def random_inputs(like: Split, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """The attack's data-free inputs in ``like``'s modality, by its declared ``noise`` law."""
    return MODALITIES.get(like.data_type).noise(like.inputs, shape, generator)


def unlabelled(inputs: np.ndarray) -> Split:
    """Inputs as a split with placeholder labels (deployment inference reads none)."""
    return Split(inputs, np.zeros(len(inputs), dtype=np.int64))


def noise_probe(like: Split, n: int, seed: int) -> Split:
    """n inputs of ``like``'s modality's ``probe`` law, seeded by (seed, ``PROBE_STREAM``):
    the same for every model attacked with ``seed``."""
    stream = np.random.SeedSequence([seed, PROBE_STREAM]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(stream))
    probe = MODALITIES.get(like.data_type).probe
    return unlabelled(probe(like.inputs, (n, *like.inputs.shape[1:]), generator))


def ood_probe(ood: Split, n: int, seed: int) -> Split:
    """n of ``ood``'s images (all, if it holds fewer), seeded by (seed, ``PROBE_STREAM``)."""
    rng = np.random.default_rng([seed, PROBE_STREAM])
    picked = np.sort(rng.permutation(len(ood))[:n])
    return unlabelled(ood.inputs[picked])


def curve_sample(test: Split, classes: Sequence[int], n: int, seed: int) -> Split:
    """A fixed subset of ``n`` of ``test``'s samples of ``classes`` (all, if fewer),
    seeded by (seed, ``PROBE_STREAM``): the relearn curve's points are scored on it."""
    where = np.flatnonzero(np.isin(test.labels, list(classes)))
    picked = np.sort(np.random.default_rng([seed, PROBE_STREAM]).permutation(where)[:n])
    return Split(test.inputs[picked], test.labels[picked])


# one dataset, or candidates in order of preference: each attacked set takes the first
# that is not itself, so two sets of one modality can each probe with the other
OodChoice = DatasetName | Annotated[tuple[DatasetName, ...], NonEmpty()] | None


def ood_candidates(choice: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """The datasets an ``ood_datasets`` entry lists, in order (none for null)."""
    if choice is None:
        return ()
    return (choice,) if isinstance(choice, str) else tuple(choice)


def ood_dataset(choice: str | tuple[str, ...] | list[str] | None, attacked: str) -> str | None:
    """The OOD probe dataset of dataset ``attacked``: the first the entry lists that is
    not ``attacked`` itself (a set is not out of its own distribution); ``None`` where
    none is left."""
    return next((name for name in ood_candidates(choice) if name != attacked), None)


def ood_inputs(
    names: Mapping[str, OodChoice], data_params: Mapping[str, Mapping], attacked: PreparedDataset
) -> Split | None:
    """The OOD probe of ``attacked``: the test split of the dataset ``names`` lists for its
    modality (the first listed that is not ``attacked`` itself, ``ood_dataset``), built
    from its ``data.<name>`` params through the registry. ``None`` where there is none to
    measure: no dataset listed for the modality, or only the attacked dataset itself.
    Images are resized to the model's input as every split is; token sequences keep their
    own length (a text encoder reads any length up to its positions)."""
    name = ood_dataset(names.get(attacked.data_type), attacked.name)
    if name is None:
        return None
    ood = build_dataset(name, data_params.get(name, {}))
    if ood.data_type != attacked.data_type:
        raise ValueError(
            f"ood_datasets.{attacked.data_type}: {name} holds {ood.data_type}, not "
            f"{attacked.data_type}"
        )
    return ood.splits["test"]
