"""What the recovery adversary is handed and what it is probed with.

``AdversaryView`` is all the attacking code sees: the forgotten classes' ids, m labelled
train shots per class (none at m = 0: ``adversary_view`` then reads no forgotten-class
sample), ``anchor_shots`` labelled train samples per retained class and, at m = 0, a
stream of uniform-noise positives. The scores come from the test split, which the
adversary never sees (``pfm.attacks.harness``).

The specificity probes ask where inputs of no forgotten class go after the attack. The
noise probe is drawn from another law and another seed than the attack's own noise
(smooth, low-frequency images instead of per-pixel uniform ones; uniform audio features
instead of Gaussian ones), so a data-free attack that maps "its" noise to the class is
not credited with specificity by construction.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pfm.data import PreparedDataset, build_dataset
from pfm.data.prepared import Split

PROBE_STREAM = 2  # seeds the specificity probes apart from the attack's own draws
SMOOTH_CELL = 4  # pixels per cell of the smooth noise probe's coarse grid


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
        shape = (len(labels), *self.anchors.images.shape[1:])
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
    none = Split(anchors.images[:0], anchors.labels[:0])
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
    return Split(split.images[picked], split.labels[picked])


def random_inputs(like: Split, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """The attack's data-free inputs in ``like``'s modality: per-pixel uniform uint8
    images, or audio features drawn like normalised ones (N(0, 0.5²), the AST recipe
    ``pfm.data`` follows)."""
    if like.data_type == "image":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8).numpy()
    return (0.5 * torch.randn(shape, generator=generator)).to(torch.float16).numpy()


def smooth_inputs(like: Split, shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
    """The noise probe's inputs, of another law than ``random_inputs``: images are uniform
    noise on a coarse grid (``SMOOTH_CELL`` px cells) upsampled bilinearly, so
    neighbouring pixels agree; audio features are uniform on [−1, 1]."""
    if like.data_type != "image":
        return (2 * torch.rand(shape, generator=generator) - 1).to(torch.float16).numpy()
    n, height, width, channels = shape
    coarse_size = (n, channels, -(-height // SMOOTH_CELL) + 1, -(-width // SMOOTH_CELL) + 1)
    coarse = 255 * torch.rand(coarse_size, generator=generator)
    fine = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    return fine.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def unlabelled(inputs: np.ndarray) -> Split:
    """Inputs as a split with placeholder labels (deployment inference reads none)."""
    return Split(inputs, np.zeros(len(inputs), dtype=np.int64))


def noise_probe(like: Split, n: int, seed: int) -> Split:
    """n smooth-noise inputs in ``like``'s modality (``smooth_inputs``), seeded by (seed,
    ``PROBE_STREAM``): the same for every model attacked with ``seed``."""
    stream = np.random.SeedSequence([seed, PROBE_STREAM]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(stream))
    return unlabelled(smooth_inputs(like, (n, *like.images.shape[1:]), generator))


def ood_probe(ood: Split, n: int, seed: int) -> Split:
    """n of ``ood``'s images (all, if it holds fewer), seeded by (seed, ``PROBE_STREAM``)."""
    rng = np.random.default_rng([seed, PROBE_STREAM])
    picked = np.sort(rng.permutation(len(ood))[:n])
    return unlabelled(ood.images[picked])


def curve_sample(test: Split, classes: Sequence[int], n: int, seed: int) -> Split:
    """A fixed subset of ``n`` of ``test``'s samples of ``classes`` (all, if fewer),
    seeded by (seed, ``PROBE_STREAM``): the relearn curve's points are scored on it."""
    where = np.flatnonzero(np.isin(test.labels, list(classes)))
    picked = np.sort(np.random.default_rng([seed, PROBE_STREAM]).permutation(where)[:n])
    return Split(test.images[picked], test.labels[picked])


def ood_images(
    name: str | None, data_params: Mapping[str, Mapping], attacked: PreparedDataset
) -> Split | None:
    """The test split of dataset ``name``, built from its ``data.<name>`` params through the
    registry: the OOD probe of an image dataset. ``None`` where there is none to measure:
    ``name`` null, an audio dataset attacked, or ``name`` the attacked dataset itself."""
    if name is None or attacked.data_type != "image" or name == attacked.name:
        return None
    ood = build_dataset(name, data_params.get(name, {}))
    if ood.data_type != "image":
        raise ValueError(f"ood_dataset {name!r} holds {ood.data_type}; an image set is needed")
    return ood.splits["test"]
