"""What every recovery capability shares: the attacked copy as a function of stored inputs
(``Forward``, with the frozen encoder's outputs cached when only the head changes) and
the scoring (``Scorer``): the relearn curve on a fixed small subset of the test
forgotten-class samples, and at the budget's end the full test split — forgotten-class
accuracy, retained-class accuracy against its pre-attack value (collapse) and the
specificity probes. Every scoring pass runs under ``torch.inference_mode``; the
adversary's code never reads what the scorer holds.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pfm.attacks.probes import AttackData, curve_sample, noise_probe, ood_probe
from pfm.batches import SplitTensors
from pfm.data.prepared import Split
from pfm.models.prompted import PromptedClassifier
from pfm.modes import mode_logits
from pfm.unlearn.data import class_slice

MODE = "full_bank"  # deployment inference, during the attack and its scoring
Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, labels)


def head_inputs(
    model: PromptedClassifier, pixel_values: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """(B, D): what ``model``'s head reads for ``pixel_values`` under ``MODE`` (every bank
    prompt; none in a plain model), taken by a forward pre-hook on the head. ``MODE``
    reads no label, so placeholder labels are passed."""
    captured: list[torch.Tensor] = []
    handle = model.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    labels = torch.zeros(len(pixel_values), dtype=torch.long, device=pixel_values.device)
    try:
        with torch.no_grad():  # not inference_mode: cached inputs enter training steps
            mode_logits(model, pixel_values, labels, MODE, generator)
    finally:
        handle.remove()
    return torch.cat(captured)


class Forward:
    """The attacked copy as a function of stored inputs. When only the head changes
    (``cached``), everything before it is frozen and deterministic (eval mode), so each
    sample's head input is computed once and the steps run the head on those — the same
    optimisation at a fraction of the cost."""

    def __init__(
        self, model: PromptedClassifier, cached: bool, batch_size: int, generator: torch.Generator
    ) -> None:
        self.model = model
        self.cached = cached
        self.batch_size = batch_size
        self.generator = generator
        self.device = next(model.parameters()).device

    def batches(self, split: Split) -> list[Batch]:
        data = SplitTensors(split, self.model.input_size, self.device)
        return [
            (head_inputs(self.model, x, self.generator) if self.cached else x, y)
            for x, y in data.batches(self.batch_size)
        ]

    def whole(self, split: Split) -> Batch | None:
        """``split`` as one batch; ``None`` for an empty split."""
        parts = self.batches(split)
        if not parts:
            return None
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    def logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cached:
            masked = self.model.masked
            return self.model.head(x).masked_fill(masked, torch.finfo(x.dtype).min)
        return mode_logits(self.model, x, y, MODE, self.generator)

    @torch.inference_mode()
    def predict(self, data: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted classes, labels) over every batch of ``data``."""
        predicted = [self.logits(x, y).argmax(dim=1) for x, y in data]
        return torch.cat(predicted), torch.cat([y for _, y in data])

    def accuracy(self, data: list[Batch]) -> float:
        predicted, labels = self.predict(data)
        return float((predicted == labels).float().mean())

    def share(self, data: list[Batch], classes: Sequence[int]) -> float:
        """The fraction of ``data`` predicted as one of ``classes``."""
        return recovered_share(self.predict(data)[0], classes)


def recovered_share(predicted: torch.Tensor, classes: Sequence[int]) -> float:
    """The fraction of ``predicted`` classes that are one of ``classes``."""
    wanted = torch.tensor(list(classes), device=predicted.device)
    return float(torch.isin(predicted, wanted).float().mean())


@dataclass(frozen=True)
class Outcome:
    """What the metrics keep of one attack, at the budget's end: small and picklable, so a
    worker process returns it where a model would be megabytes."""

    curve: list[tuple[int, float]]  # (step, test forgotten acc): subset points, full at end
    acc: float  # test forgotten-class accuracy at the budget's end: the reported number
    oracle_acc: float  # the curve's best point: an oracle upper bound, never the report
    pre_retain_acc: float  # retained-class test accuracy before the attack
    retain_acc: float  # … at the budget's end
    collapsed: bool  # retain_acc < collapse_fraction × pre_retain_acc: no recovery credit
    relearn_steps: int  # first curve step reaching ``relearn_threshold``; the end if none
    relearned: bool  # whether any curve point reached it
    retain_to_recovered: float  # retained-class test samples predicted as a forgotten class
    noise_to_recovered: float  # noise-probe inputs predicted as a forgotten class
    ood_to_recovered: float | None  # OOD images predicted as a forgotten class; None: no set


def relearn_time(curve: Sequence[tuple[int, float]], threshold: float) -> tuple[int, bool]:
    """(the first step whose accuracy reaches ``threshold``, True), or (the curve's last
    step, False)."""
    return next(((step, True) for step, acc in curve if acc >= threshold), (curve[-1][0], False))


@dataclass(frozen=True)
class ScoringSets:
    """What one attacked copy is scored on, as its ``Forward`` reads it (the frozen
    encoder's head inputs where only the head changes), and its retained accuracy before
    the attack. All of it depends on the copy before the attack alone, which is the same
    for every m of one (model, capability, seed): ``attack_every_shot`` builds it once
    (for the head-only capabilities that is one encoder pass over the test split and the
    probes instead of one per m)."""

    sample: list[Batch]  # the curve's fixed subset of the test forgotten-class samples
    forgotten: list[Batch]  # every test sample of the forgotten classes
    retained: list[Batch]  # every other test sample
    noise: list[Batch]  # the noise probe
    ood: list[Batch] | None  # the OOD probe; None: no set
    pre_retain_acc: float  # retained-class test accuracy before the attack


def scoring_sets(
    forward: Forward,
    data: AttackData,
    classes: Sequence[int],
    curve_samples: int,
    probe_samples: int,
    seed: int,
) -> ScoringSets:
    """The ``ScoringSets`` of the copy ``forward`` runs, built before its attack."""
    forgotten = forward.batches(class_slice(data.test, classes, True))
    if not forgotten:
        raise ValueError(f"the test split has no sample of classes {list(classes)}")
    retained = forward.batches(class_slice(data.test, classes, False))
    return ScoringSets(
        sample=forward.batches(curve_sample(data.test, classes, curve_samples, seed)),
        forgotten=forgotten,
        retained=retained,
        noise=forward.batches(noise_probe(data.train, probe_samples, seed)),
        ood=None if data.ood is None else forward.batches(ood_probe(data.ood, probe_samples, seed)),
        pre_retain_acc=forward.accuracy(retained),
    )


class Scorer:
    """Scores one attacked copy on its ``ScoringSets`` (built before the attack, so cached
    head inputs are the frozen encoder's): the curve on the subset, the outcome on the
    full test split and the probes."""

    def __init__(
        self, forward: Forward, sets: ScoringSets, classes: Sequence[int], eval_every: int
    ) -> None:
        self.forward = forward
        self.sets = sets
        self.classes = classes
        self.eval_every = eval_every
        self.points: list[tuple[int, float]] = []

    def record(self, step: int) -> None:
        """A curve point on the subset at step 0 and every ``eval_every`` steps."""
        if step % self.eval_every == 0:
            self.points.append((step, self.forward.accuracy(self.sets.sample)))

    def outcome(
        self, last_step: int, collapse_fraction: float, relearn_threshold: float
    ) -> Outcome:
        """The attack's numbers at ``last_step``, the budget's end, on the full test split
        (that point replaces a subset point at the same step)."""
        sets = self.sets
        acc = self.forward.accuracy(sets.forgotten)
        curve = [(s, a) for s, a in self.points if s != last_step] + [(last_step, acc)]
        predicted, labels = self.forward.predict(sets.retained)
        retain_acc = float((predicted == labels).float().mean())
        relearn_steps, relearned = relearn_time(curve, relearn_threshold)
        return Outcome(
            curve=curve,
            acc=acc,
            oracle_acc=max(a for _, a in curve),
            pre_retain_acc=sets.pre_retain_acc,
            retain_acc=retain_acc,
            collapsed=retain_acc < collapse_fraction * sets.pre_retain_acc,
            relearn_steps=relearn_steps,
            relearned=relearned,
            retain_to_recovered=recovered_share(predicted, self.classes),
            noise_to_recovered=self.forward.share(sets.noise, self.classes),
            ood_to_recovered=None
            if sets.ood is None
            else self.forward.share(sets.ood, self.classes),
        )
