"""``wordnet-supersenses``: WordNet 3.0 glosses labelled with their synset's supersense.

Source: Debian's ``wordnet-base`` (``/usr/share/wordnet/data.noun``, ``data.verb``, …;
WordNet 3.0, Princeton University's permissive licence). Each synset line of a data file
carries its lexicographer file number — the supersense, ``noun.artifact``,
``noun.person``, … (``LEXNAMES``, wndb(5WN)) — and after ``" | "`` its gloss: a
definition, then quoted examples. A sample is the definition alone (examples often
contain the very word, and the words are the synset's, not the class's); a definition
shared by synsets of two supersenses is dropped, one shared within a class kept once.

Classes: ``classes`` (lexicographer file names, any part of speech), or else the
``largest`` noun supersenses by synset count. Per class a seeded permutation gives test,
then val, then train at most their caps. Tokenised once here by ``tokenizer``
(``pfm.data.tokens``: ``minilm`` word pieces, or ``smollm2`` for a llama backbone).
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pfm.config import Bounds, Count, Natural, NonEmpty, OneOf
from pfm.data.prepared import PreparedDataset
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.splits import draw_splits
from pfm.data.tokens import TokenizerName, answer_tokens, token_splits, tokenizer_source
from pfm.files import file_digest

LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition", "noun.communication",
    "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip  # lexicographer file number → name (WordNet 3.0's lexnames)
NOUN_SUPERSENSES = tuple(name for name in LEXNAMES if name.startswith("noun."))
LICENCE = (
    "WordNet 3.0 Copyright 2006 by Princeton University; WordNet 3.0 licence (use, copy, "
    "modify and distribute with the copyright notice), as packaged by Debian wordnet-base"
)
Supersense = Annotated[str, OneOf(LEXNAMES, "lexicographer file")]


def data_file(root: Path, lexname: str) -> Path:
    """The data file holding supersense ``lexname``'s synsets (``noun.x`` → ``data.noun``)."""
    return root / f"data.{lexname.split('.')[0]}"


def read_definitions(path: Path) -> dict[str, list[str]]:
    """Supersense → its synsets' definitions, in file order. Lines opening with two spaces
    are the licence header; a gloss without a definition (examples only) is skipped."""
    found: dict[str, list[str]] = defaultdict(list)
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("  ") or " | " not in line:
                continue
            head, _, gloss = line.partition(" | ")
            definition = gloss.split('"')[0].strip().rstrip(";").strip()
            if definition:
                found[LEXNAMES[int(head.split()[1])]].append(definition)
    return found


def unique_per_class(found: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each class's definitions once, without those that also stand in another class."""
    owners: dict[str, set[str]] = defaultdict(set)
    for name, texts in found.items():
        for text in texts:
            owners[text].add(name)
    return {
        name: list(dict.fromkeys(t for t in texts if len(owners[t]) == 1))
        for name, texts in found.items()
    }


def chosen_classes(
    root: Path, classes: Sequence[str] | None, largest: int | None
) -> dict[str, list[str]]:
    """Class name → definitions: ``classes`` in their order, or the ``largest`` noun
    supersenses, most synsets first (ties by lexicographer file number)."""
    if (classes is None) == (largest is None):
        raise ValueError("set exactly one of classes (a list of supersenses) and largest (N)")
    names = classes or NOUN_SUPERSENSES
    found: dict[str, list[str]] = {}
    for path in sorted({data_file(root, name) for name in names}):
        if not path.is_file():
            raise FileNotFoundError(
                f"WordNet file {path} not found: install Debian's wordnet-base "
                f"(apt-get install wordnet-base; bash setup.sh does) or set "
                f"data.wordnet-supersenses.root"
            )
        found.update(unique_per_class(read_definitions(path)))
    if classes is not None:
        return {name: found.get(name, []) for name in classes}
    ranked = sorted(found, key=lambda n: (-len(found[n]), LEXNAMES.index(n)))
    return {name: found[name] for name in ranked[:largest]}


@DATASETS.register("wordnet-supersenses")
def wordnet_supersenses(
    root: str = "/usr/share/wordnet",
    classes: Annotated[tuple[Supersense, ...], NonEmpty()] | None = None,
    largest: Annotated[int, Bounds(2, len(NOUN_SUPERSENSES))] | None = 8,
    train_per_class: Count = 200,
    val_per_class: Count = 50,
    test_per_class: Count = 50,
    max_tokens: Annotated[int, Bounds(3, 512)] = 32,
    split_seed: Natural = 0,
    tokenizer: TokenizerName = "minilm",
) -> PreparedDataset:
    """Supersense-labelled WordNet definitions, tokenised (module docstring). Set
    ``largest`` to null to use ``classes``."""
    root_path = Path(root)
    chosen = chosen_classes(root_path, classes, largest)
    caps = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    drawn = draw_splits(list(chosen.values()), caps, split_seed)
    splits = token_splits(drawn, max_tokens, tokenizer)
    files = sorted({data_file(root_path, name) for name in chosen})
    source = {
        "licence": LICENCE,
        **{f"{path.name} sha256": file_digest(path) for path in files},
        **tokenizer_source(tokenizer),
    }
    return PreparedDataset(
        name="wordnet-supersenses",
        class_names=tuple(chosen),
        splits=splits,
        data_type="text",
        source=source,
        answer_tokens=answer_tokens(tuple(chosen), tokenizer),
    )


@DESCRIPTIONS.register("wordnet-supersenses")
def describe_wordnet(args: Mapping[str, Any]) -> DatasetInfo:
    classes = args["classes"]
    count = len(classes) if classes is not None else args["largest"]
    return DatasetInfo("text", count, args["train_per_class"], args["tokenizer"])  # a cap
