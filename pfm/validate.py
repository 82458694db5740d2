"""The whole params.yaml, checked before any stage runs (stage ``validate``).

A stage checks the sections it reads, but under DVC that is too late: DVC removes a
stage's outputs before it starts it, so a bad value found there has already cost them.
Stage ``validate`` runs first (the root stages depend on its marker) and reads every
section through the reader its stage uses — the same dataclasses through the same
``from_mapping`` — so this check cannot drift from what the stages accept. On top it
checks what no single stage sees: every top-level key is known, the datasets and
methods of the matrix are registered, every ``data.<name>`` block fits its builder,
every recipe a method needs is there and every device exists here, and every limit that
depends on a listed dataset (``pfm.limits``: k < C, shots within a class's train samples),
from the registry's description of it, before any data is prepared. Stage tune's section
is checked with the search spaces the listed methods declare on their recipes (a range a
field does not take is refused, ``pfm.tune.space``) and the tuning sets it will draw
(enough sets the report does not score, ``pfm.tune.sets``). It checks params as loaded
(``pfm.config.load_params``): with the derived keys filled (``pfm.derive``).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pfm.attacks import MIA_VARIANTS, MiaParams, RecoveryParams
from pfm.config import Matrix, NonEmpty, ParamError, bad_value, from_mapping
from pfm.data import DATASETS
from pfm.data.registry import DatasetName, check_options, describe
from pfm.derive import PLAIN_EVAL_MODES, completed
from pfm.limits import check_dataset_limits, check_sizes
from pfm.models import convert
from pfm.pretrain import PretrainParams
from pfm.reporting.aggregate import AggregateParams
from pfm.specs import EvaluateParams, ModelParams, model_spec
from pfm.train import TrainConfig, resolve_device
from pfm.tune.params import TuneParams
from pfm.tune.recipes import RecipeSource
from pfm.tune.sets import scored_sets, tuning_sets
from pfm.tune.space import check_space
from pfm.unlearn import METHODS, UnlearnParams, read_params, unlearn_params
from pfm.unlearn.base import MethodName
from pfm.unlearn.sample_params import samples_params


@dataclass(frozen=True)
class ParamsFile(Matrix):
    """Every top-level key of params.yaml: the matrix axes, now checked against their
    registries, and one mapping per section, each checked by its own reader below."""

    datasets: Annotated[tuple[DatasetName, ...], NonEmpty()]
    methods: Annotated[tuple[MethodName, ...], NonEmpty()]
    data: Mapping[str, Any]
    pretrain: Mapping[str, Any]
    model: Mapping[str, Any]
    train: Mapping[str, Any]
    evaluate: Mapping[str, Any]
    train_base: Mapping[str, Any]
    unlearn: Mapping[str, Any]
    samples: Mapping[str, Any]
    tune: Mapping[str, Any]
    attacks: Mapping[str, Any]
    aggregate: Mapping[str, Any]
    convert: Mapping[str, Any] | None = None  # read by the converters' command lines
    recipes: RecipeSource = "hand"  # which recipes stage unlearn runs (pfm.tune.recipes)


@dataclass(frozen=True)
class AttackSections:
    """The ``attacks`` section: one block per attack."""

    mia: Mapping[str, Any]
    recovery: Mapping[str, Any]


def check_data(blocks: Mapping[str, Any]) -> None:
    """Every ``data.<name>`` block: a registered dataset whose builder takes its options."""
    for name, options in blocks.items():
        if name not in DATASETS:
            raise bad_value("data", f"blocks named after datasets ({', '.join(DATASETS)})", name)
        check_options(name, options or {}, f"data.{name}")


def check_tune(top: ParamsFile, unlearn: UnlearnParams) -> None:
    """Stage tune's section, the search space of every listed method, and the tuning sets
    on every listed dataset: enough of them that no report unit is among them."""
    tune = from_mapping(TuneParams, top.tune, "tune")
    if tune.seed not in top.seeds:
        raise bad_value("tune.seed", f"one of seeds {list(top.seeds)}", tune.seed)
    for method in top.methods:
        check_space(METHODS.get(method).recipe, f"unlearn.{method}")
    for name in top.datasets:
        info = describe(name, top.data.get(name) or {}, f"data.{name}")
        check_sizes("tune.k", tune.k, name, info)
        scored = scored_sets(info.num_classes, unlearn, top.seeds)
        try:
            tuning_sets(info.num_classes, tune.k, tune.sets, scored, tune.seed)
        except ValueError as error:
            raise ParamError(f"{error.args[0]} on dataset {name}") from None


def check_params(params: Mapping[str, Any], devices: bool = True) -> list[str]:
    """Raise the first bad key of ``params`` as one line (``ParamError``, ``KeyError``);
    when every stage would accept every section, return the warnings: values valid but
    doing less than they ask (``pfm.limits``), one line each. Derived keys are checked
    as the stages see them (``pfm.derive``; completing twice changes nothing).
    ``devices=False`` skips checking that each device exists on this machine (a profile
    for a GPU machine)."""
    top = from_mapping(ParamsFile, completed(params), "")
    check_data(top.data)
    pretrain = from_mapping(PretrainParams, top.pretrain, "pretrain")
    check_options(pretrain.dataset, pretrain.data, "pretrain.data")
    model_spec(top.model, num_classes=2, with_prompts=True)
    train = from_mapping(TrainConfig, top.train, "train")
    train_base = from_mapping(TrainConfig, top.train_base, "train_base")
    if train_base.eval_modes != tuple(PLAIN_EVAL_MODES):
        raise bad_value(
            "train_base.eval_modes", "[none] (a plain model has no prompts)",
            list(train_base.eval_modes),
        )  # fmt: skip
    evaluate = from_mapping(EvaluateParams, top.evaluate, "evaluate")
    for method in {*top.methods, "pfm"}:  # evaluate forgets by unlearn.pfm's recipe
        read_params(top.unlearn, method)
    for method in samples_params(top.samples).methods:
        read_params(top.unlearn, method)
    attacks = from_mapping(AttackSections, top.attacks, "attacks")
    mia = from_mapping(MiaParams, attacks.mia, "attacks.mia")
    recovery = from_mapping(RecoveryParams, attacks.recovery, "attacks.recovery")
    aggregate = from_mapping(AggregateParams, top.aggregate, "aggregate")
    if aggregate.primary_mia not in MIA_VARIANTS:  # pfm.reporting stays torch-free: checked here
        raise bad_value(
            "aggregate.primary_mia", f"one of {', '.join(MIA_VARIANTS)}", aggregate.primary_mia
        )
    convert.check_params(top.convert or {})
    warnings = check_dataset_limits(
        top.datasets, top.data, unlearn_params(top.unlearn), evaluate, mia, recovery,
        from_mapping(ModelParams, top.model, "model"),
    )  # fmt: skip
    check_tune(top, unlearn_params(top.unlearn))  # its sets assume the limits above hold
    if not devices:
        return warnings
    for key, device in (
        ("pretrain.device", pretrain.device),
        ("train.device", train.device),
        ("train_base.device", train_base.device),
    ):
        try:
            resolve_device(device)
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
    return warnings
