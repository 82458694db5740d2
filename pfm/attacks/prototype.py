"""The prototype attack: training-free recovery through the head (Ha et al. 2025,
arXiv 2506.01318, "prototype" relearning).

The forgotten class's head row is overwritten with a mix of its current value and the
class's prototype: the mean of the L2-normalised features the head reads (under
deployment inference) for the m shots, normalised and scaled to the mean norm of the
retained classes' rows; its bias entry likewise mixes toward the retained biases' mean.
``prototype_weight`` is the prototype's share (1: the row is replaced), the value
``python -m pfm.attacks.calibrate`` picks for this attack as it picks a trained one's lr
(a full replacement can make the class a sink for every input). Nothing is
trained, so there is no budget: the curve is the model before (step 0) and after the
overwrite (step 1). It needs labelled shots (m ≥ 1) and applies to every model with a
head row — prompt models and plain ones, attacked and references alike.
"""

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from pfm.attacks.capabilities import Capability, Masks, Record, Trainable, head_rows, register
from pfm.attacks.harness import Forward
from pfm.attacks.probes import AdversaryView
from pfm.attacks.protocol import RecoveryParams
from pfm.models.prompted import PromptedClassifier


class Prototype(Capability):
    """Overwrite the forgotten classes' head rows with their shots' prototype."""

    @property
    def knob(self) -> str:
        return "prototype_weight"

    def with_knob(self, params: RecoveryParams, value: float) -> RecoveryParams:
        return replace(params, prototype_weight=value)

    def masks(
        self, model: PromptedClassifier, classes: Sequence[int], adapters: Sequence[str]
    ) -> Masks:
        return head_rows(model, classes)

    def run(
        self,
        forward: Forward,
        trained: Sequence[Trainable],
        view: AdversaryView,
        params: RecoveryParams,
        record: Record,
    ) -> int:
        record(0)
        shots = forward.whole(view.shots)
        assert forward.cached and shots is not None, "the prototype reads cached shot features"
        features, labels = shots  # (m·k, D): what the head reads
        head, weight = forward.model.head, params.prototype_weight
        with torch.no_grad():
            others = ~head_rows(forward.model, view.classes)["head.weight"]
            scale = head.weight[others].norm(dim=1).mean()
            for c in view.classes:
                unit = F.normalize(features[labels == c].float(), dim=1).mean(dim=0)
                prototype = (scale * F.normalize(unit, dim=0)).to(head.weight.dtype)
                head.weight[c] = (1 - weight) * head.weight[c] + weight * prototype
                head.bias[c] = (1 - weight) * head.bias[c] + weight * head.bias[others].mean()
        record(1)
        return 1


register(Prototype("prototype", prompted=None, head_only=True, min_shots=1))
