"""Which forget sets ("draws") the recovery attack attacks: known from the seed before
anything is unlearned, so that stage train can fit one never-seen reference per attacked
draw (``reference_draws``, ``attacked_draws``), and found again in the unlearn stage's
saved manifests when the attack runs (``select_draws``, ``matching_draw``).

The unlearn stage saves one model per draw (``pfm.unlearn.manifest``); every method's
draws are the same sets, so attacking the first ``limit`` draws of a k hits the same
sets for every method and for the reference. Neither stage train nor the unlearn stage
imports ``pfm.attacks``: this module is where they and the attacks agree.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from pfm.config import Count, Counts, from_mapping, section
from pfm.evaluate import forget_sets, sets_per_k
from pfm.unlearn import unlearn_params


@dataclass(frozen=True)
class AttackedDraws:
    """The keys of ``attacks.recovery`` that fix which draws are attacked: all stage train
    reads of that section (dvc.yaml tracks these two keys alone for it)."""

    k: Counts  # attack the unlearn stage's draws that forget these many classes
    draws: Count | None  # at most this many draws per k (each costs a reference); null: all


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"the number of draws to attack must be ≥ 1 or null, got {limit}")


def select_draws(
    manifest: Mapping[str, Any], k: int, limit: int | None = None
) -> list[dict[str, Any]]:
    """The first ``limit`` (``None``: all) manifest draws that forget ``k`` classes."""
    check_limit(limit)
    draws = [dict(d) for d in manifest["draws"] if d["k"] == k]
    if not draws:
        found = sorted({d["k"] for d in manifest["draws"]})
        raise ValueError(
            f"the {manifest['method']} models hold no draw with k={k} (found k in {found}); "
            f"attack a k the unlearn stage ran (unlearn.k)"
        )
    return draws[:limit]


def matching_draw(manifest: Mapping[str, Any], classes: Sequence[int]) -> dict[str, Any]:
    """The draw of ``manifest`` that forgets exactly ``classes`` (a reference model for
    an attacked draw)."""
    for draw in manifest["draws"]:
        if sorted(draw["classes"]) == sorted(classes):
            return dict(draw)
    raise ValueError(
        f"the {manifest['method']} models hold no draw forgetting classes {list(classes)}; "
        "rerun the stage that saved them"
    )


def reference_draws(
    num_classes: int,
    ks: Sequence[int],
    max_sets: int | None | Mapping[int, int | None],
    limit: int | None,
    seed: int,
) -> list[tuple[int, ...]]:
    """The forget sets the recovery attack will attack: for each k of ``ks``, the first
    ``limit`` (``None``: all) of the unlearn stage's sets of size k, capped there at
    ``max_sets`` (one cap, or k → cap). They follow from the seed alone
    (``pfm.evaluate.forget_sets``), so the references train beside the prompt model,
    before anything is unlearned; the attack checks that each attacked draw has one."""
    check_limit(limit)
    caps = max_sets if isinstance(max_sets, Mapping) else dict.fromkeys(ks, max_sets)
    unsaved = [k for k in ks if k not in caps]
    if unsaved:
        raise ValueError(
            f"the recovery attack's k {unsaved} are not among the unlearn stage's "
            f"{sorted(caps)}: attack a k the unlearn stage runs (unlearn.k)"
        )
    draws = [s for k in ks for s in forget_sets(num_classes, k, caps[k], seed)[0][:limit]]
    return list(dict.fromkeys(draws))


def unlearn_caps(params: Mapping[str, Any], num_classes: int) -> dict[int, int | None]:
    """k → the unlearn stage's cap on forget sets: the draws the references must match."""
    unlearn = unlearn_params(section(params, "unlearn"))
    return sets_per_k(unlearn.ks(num_classes), unlearn.max_sets)


def attacked_draws(params: Mapping[str, Any], num_classes: int, seed: int) -> list[tuple[int, ...]]:
    """The draws params' recovery attack attacks (``attacks.recovery``'s k and draws, among
    the unlearn stage's sets): one never-seen reference each. The rest of the section is
    the attack's (``pfm.attacks.protocol.RecoveryParams``, checked by stage validate)."""
    recovery = section(section(params, "attacks"), "recovery")
    keys = {f.name: recovery[f.name] for f in fields(AttackedDraws) if f.name in recovery}
    attacked = from_mapping(AttackedDraws, keys, "attacks.recovery")
    caps = unlearn_caps(params, num_classes)
    return reference_draws(num_classes, attacked.k, caps, attacked.draws, seed)
