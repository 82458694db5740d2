"""Membership inference on the forgotten classes: does the unlearned model still tell the
samples it was trained on from samples of the same classes it never saw?

Members are the forgotten classes' *train* samples, non-members their *test* samples;
the shadow-trained variants fit their attacker on the retained classes' train (member)
vs test (non-member) samples, which the adversary may know, and never on forgotten-class
samples. A model that never saw the forgotten classes (``retrain``) sets the reference
value of each variant; ``pfm.reporting.aggregate`` reports every method's gap to it.

Every variant reads per-sample outputs under deployment inference (``full_bank``; a
model without prompts: no prompts) and is registered in ``MIA_VARIANTS``; its value is
the metric ``mia.<variant>``:

- ``loss_auc``: ROC AUC of the score −loss (members have lower loss) for members vs
  non-members — the loss-threshold attack (Yeom et al., CSF 2018) over every threshold.
  0.5: no membership signal; 1: every member has a lower loss than every non-member.
- ``efficacy``: "MIA-efficacy" of Jia et al. ("Model Sparsity Can Simplify Machine
  Unlearning", NeurIPS 2023) and SalUn (Fan et al., ICLR 2024): an RBF SVC (C = 3,
  gamma "auto", their values) fitted on the softmax confidence of the true class of the
  shadow samples (members 1, non-members 0, balanced by seeded subsampling as their
  shadow set is), then the fraction of forgotten-class *train* samples it predicts as
  non-members. High: the forgotten samples look unseen.
- ``efficacy_entropy``: the same with the entropy of the softmax as the feature.
- ``loss_logreg``: the NeurIPS 2023 Machine Unlearning Challenge's simple MIA: logistic
  regression on the per-sample loss of members vs non-members (balanced by seeded
  subsampling of the larger side), mean accuracy over 10 stratified shuffle splits
  with sklearn's default 10% held-out fold (both are params). 0.5: the losses do not
  reveal membership.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC

from pfm.batches import SplitTensors
from pfm.config import Count, Fraction, Rate
from pfm.data.prepared import Split
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits
from pfm.precision import Precision, autocast
from pfm.registry import Registry
from pfm.unlearn.data import class_slice

MODE = "full_bank"  # deployment inference: what an adversary queries


@dataclass(frozen=True)
class MiaParams:
    """The ``attacks.mia`` section of params.yaml."""

    k: Count  # attack the unlearn stage's draws that forget this many classes
    draws: Count | None  # at most this many of them; null: all
    batch_size: Count  # inference batch
    svc_c: Rate  # SVC regularisation of the efficacy variants (Jia et al.: 3)
    cv_splits: Count  # shuffle splits of the logistic-regression variant (challenge: 10)
    cv_test_size: Fraction  # held-out fraction of each split (challenge: sklearn's 0.1)
    precision: Precision = "fp32"  # of the model's forwards: fp32 | bf16 (pfm.precision)


@dataclass(frozen=True)
class Outputs:
    """Per-sample outputs of a model on one set of samples, each (N,)."""

    loss: np.ndarray  # cross-entropy of the true label
    confidence: np.ndarray  # softmax probability of the true label
    entropy: np.ndarray  # entropy of the softmax (nats)


@dataclass(frozen=True)
class MembershipData:
    members: Outputs  # forgotten classes, train split
    non_members: Outputs  # forgotten classes, test split
    shadow_members: Outputs | None = None  # retained classes, train split; None: not read
    shadow_non_members: Outputs | None = None  # retained classes, test split


Score = Callable[[MembershipData, MiaParams, int], float]


@dataclass(frozen=True)
class MiaVariant:
    """A variant's score, and whether it reads the shadow (retained-class) sets: those
    are most of the data, so they are forwarded only when a variant asked for reads them."""

    score: Score
    reads_shadow: bool


MIA_VARIANTS: Registry[MiaVariant] = Registry("membership-inference variant")


def outputs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> Outputs:
    """Loss, confidence and entropy of (N, C) logits; pure, so it is tested on known
    logits."""
    log_p = F.log_softmax(logits.double(), dim=1)
    loss = -log_p.gather(1, labels[:, None]).squeeze(1)
    entropy = -(log_p.exp() * log_p).nan_to_num().sum(dim=1)  # 0 · log 0 = 0
    return Outputs(loss.numpy(), (-loss).exp().numpy(), entropy.numpy())


@torch.inference_mode()  # scoring only: what leaves is an array
def per_sample(model: PromptedClassifier, data: SplitTensors, batch_size: int) -> Outputs:
    """``model``'s outputs on every sample of ``data`` under deployment inference."""
    if len(data) == 0:
        raise ValueError("membership inference needs samples on both sides, got none")
    model.eval()
    generator = torch.Generator().manual_seed(0)  # full_bank draws nothing from it
    logits, labels = [], []
    for x, y in data.batches(batch_size):
        logits.append(mode_logits(model, x, y, MODE, generator).cpu())
        labels.append(y.cpu())
    return outputs_from_logits(torch.cat(logits), torch.cat(labels))


def loss_auc(member_loss: np.ndarray, non_member_loss: np.ndarray) -> float:
    """AUC of −loss for members (1) vs non-members (0)."""
    labels = np.r_[np.ones(len(member_loss)), np.zeros(len(non_member_loss))]
    return float(roc_auc_score(labels, -np.r_[member_loss, non_member_loss]))


def balanced_rows(n_a: int, n_b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sorted rows of two sets of ``n_a`` and ``n_b`` samples, each side cut to the
    smaller size by a seeded random subset; a side already that size keeps every row in
    order, so balancing twice with the same seed is balancing once."""
    n = min(n_a, n_b)
    return np.sort(rng.choice(n_a, n, replace=False)), np.sort(rng.choice(n_b, n, replace=False))


def balance(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays cut to the smaller one's length by a seeded random subset, so an
    attacker's accuracy of 0.5 means chance, not the class ratio."""
    rows_a, rows_b = balanced_rows(len(a), len(b), rng)
    return a[rows_a], b[rows_b]


def svc_non_member_rate(
    shadow_in: np.ndarray, shadow_out: np.ndarray, target: np.ndarray, c: float, seed: int
) -> float:
    """Fraction of ``target`` that an RBF SVC fitted on shadow members (1) vs
    non-members (0), balanced, predicts as non-members (1-D features)."""
    shadow_in, shadow_out = balance(shadow_in, shadow_out, np.random.default_rng(seed))
    features = np.r_[shadow_in, shadow_out][:, None]
    labels = np.r_[np.ones(len(shadow_in)), np.zeros(len(shadow_out))]
    attacker = SVC(C=c, gamma="auto", kernel="rbf").fit(features, labels)
    return float(1.0 - attacker.predict(target[:, None]).mean())


def logreg_accuracy(
    member_loss: np.ndarray,
    non_member_loss: np.ndarray,
    splits: int,
    test_size: float,
    seed: int,
) -> float:
    """Mean held-out accuracy of logistic regression on the loss, members vs
    non-members balanced, over ``splits`` stratified shuffle splits holding out
    ``test_size`` of the samples."""
    rng = np.random.default_rng(seed)
    members, non_members = balance(member_loss, non_member_loss, rng)
    held_out = math.ceil(test_size * 2 * len(members))
    if held_out < 2 or 2 * len(members) - held_out < 2:
        raise ValueError(
            f"{len(members)} samples per side are too few for held-out folds of "
            f"{test_size:g}: each fold and its rest must hold both sides"
        )
    features = np.r_[members, non_members][:, None]
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    cv = StratifiedShuffleSplit(n_splits=splits, test_size=test_size, random_state=seed)
    scores = cross_val_score(LogisticRegression(), features, labels, cv=cv, scoring="accuracy")
    return float(scores.mean())


def _loss_auc(data: MembershipData, params: MiaParams, seed: int) -> float:
    return loss_auc(data.members.loss, data.non_members.loss)


def _svc_on(feature: str) -> Score:
    """MIA-efficacy with the per-sample ``Outputs`` field ``feature`` as the SVC input."""

    def variant(data: MembershipData, params: MiaParams, seed: int) -> float:
        if data.shadow_members is None or data.shadow_non_members is None:
            raise ValueError("MIA-efficacy fits its attacker on the shadow sets: none given")
        shadow_in, shadow_out, members = (
            getattr(outputs, feature)
            for outputs in (data.shadow_members, data.shadow_non_members, data.members)
        )
        return svc_non_member_rate(shadow_in, shadow_out, members, params.svc_c, seed)

    return variant


def _loss_logreg(data: MembershipData, params: MiaParams, seed: int) -> float:
    return logreg_accuracy(
        data.members.loss, data.non_members.loss, params.cv_splits, params.cv_test_size, seed
    )


MIA_VARIANTS.register("loss_auc")(MiaVariant(_loss_auc, reads_shadow=False))
MIA_VARIANTS.register("efficacy")(MiaVariant(_svc_on("confidence"), reads_shadow=True))
MIA_VARIANTS.register("efficacy_entropy")(MiaVariant(_svc_on("entropy"), reads_shadow=True))
MIA_VARIANTS.register("loss_logreg")(MiaVariant(_loss_logreg, reads_shadow=False))


def membership_data(
    model: PromptedClassifier,
    train: Split,
    test: Split,
    classes: tuple[int, ...],
    batch_size: int,
    shadow_seed: int | None,
) -> MembershipData:
    """The sample sets of the module docstring, as ``model``'s outputs. The shadow sets
    only where ``shadow_seed`` is given (the seed the variants balance them with), and
    then only the rows that balancing keeps: the attacker is fitted on nothing else, so
    its value is that of the whole sets balanced, at a fraction of the forwards."""
    device = next(model.parameters()).device

    def outputs(split: Split) -> Outputs:
        return per_sample(model, SplitTensors(split, model.input_size, device), batch_size)

    members = outputs(class_slice(train, classes, True))
    non_members = outputs(class_slice(test, classes, True))
    if shadow_seed is None:
        return MembershipData(members, non_members)
    shadow = [class_slice(split, classes, False) for split in (train, test)]
    rows = balanced_rows(len(shadow[0]), len(shadow[1]), np.random.default_rng(shadow_seed))
    shadow_in, shadow_out = (
        outputs(Split(split.inputs[r], split.labels[r]))
        for split, r in zip(shadow, rows, strict=True)
    )
    return MembershipData(members, non_members, shadow_in, shadow_out)


def attack(
    model: PromptedClassifier,
    train: Split,
    test: Split,
    classes: tuple[int, ...],
    params: MiaParams,
    seed: int,
) -> dict[str, float]:
    """``mia.<variant>`` for every registered variant, on one unlearned model."""
    variants = {name: MIA_VARIANTS.get(name) for name in MIA_VARIANTS}
    shadow_seed = seed if any(v.reads_shadow for v in variants.values()) else None
    with autocast(next(model.parameters()).device, params.precision):
        data = membership_data(model, train, test, classes, params.batch_size, shadow_seed)
    return {f"mia.{name}": v.score(data, params, seed) for name, v in variants.items()}
