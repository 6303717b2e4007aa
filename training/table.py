"""The table a run trains on: the training rows, the passages known relevant to each question
(the whole table's and the qrels'), and the hard negatives mined for them (retrieval/mining.py), merged into
each row's own. Every process builds the same table."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from data import DataError, PairsData, TrainTable, index_texts, known_relevant, load_beir, load_pairs
from model import Encoder, ModelConfig, weights_digest
from retrieval.memory import collapsed
from retrieval.mining import mine, reusable
from training.config import Config, mix_rows

logger = logging.getLogger("train")


def relevance_map(config: Config, pairs: PairsData, log: bool = False) -> dict[str, set[str]]:
    """The passages known relevant to each question: the whole table's, plus data.qrels (read once,
    matched by text, so it says how many questions matched)."""
    relevant = known_relevant(pairs)
    if config.data.qrels:
        judged = known_relevant(PairsData([], [], [], ""), config.data.qrels, config.data.qrels_split)
        for question, texts in judged.items():
            relevant.setdefault(question, set()).update(texts)
        if log:
            asked = set(pairs.anchors)
            logger.info(
                "data.qrels: %d of %d training questions are judged in %s",
                len(asked & set(judged)),
                len(asked),
                Path(config.data.qrels) / "qrels" / f"{config.data.qrels_split}.tsv",
            )
    return relevant


def batch_documents(config: Config) -> dict[str, str] | None:
    """data.batch_by document: the source document (doc_id or source) of each passage text,
    whitespace collapsed, of data.qrels' BEIR corpus (the first where a text repeats); None
    otherwise. Read before the model loads. ValueError naming the corpus when it gives no passage a
    document, or when no data.train positive is one of its passages (batches would then be a plain
    shuffle); a warning when under half are."""
    if config.data.batch_by != "document":
        return None
    beir = config.data.qrels or ""
    corpus = load_beir(beir, config.data.qrels_split)
    if corpus.corpus_groups is None:
        raise ValueError(f"data.batch_by document: {beir}/corpus.jsonl gives no passage a doc_id or source")
    documents: dict[str, str] = {}
    for text, group in zip(corpus.corpus_texts, corpus.corpus_groups):
        if group:  # a passage without a document is in none
            documents.setdefault(collapsed(text), group)
    positives = load_pairs(config.data.train, config.data.train_split).positives
    found = sum(collapsed(text) in documents for text in positives)
    if not found:
        raise ValueError(
            f"data.batch_by document: none of the {len(positives)} data.train positives is a passage of "
            f"{beir}/corpus.jsonl with a document (texts matched whitespace collapsed, title first)"
        )
    if found < len(positives) / 2:
        logger.warning(
            "data.batch_by document: only %d of %d data.train positives are passages of %s with a document; "
            "the rest are batched as groups of one",
            found,
            len(positives),
            beir,
        )
    return documents


def document_groups(table: TrainTable, documents: dict[str, str], log: bool = False) -> np.ndarray:
    """Each row's group for data.batch_by document: its positive's document (batch_documents); a
    row whose positive is in no document gets a group of its own."""
    names = {name: i for i, name in enumerate(sorted(set(documents.values())))}
    by_text = np.array([names.get(documents.get(collapsed(t)), -1) for t in table.passage_texts], dtype=np.int64)
    groups = by_text[table.positive_ids]
    alone = groups < 0
    groups[alone] = len(names) + np.arange(int(alone.sum()))
    if log:
        logger.info(
            "data.batch_by document: %d of %d rows' positives in %d documents; %d in none (each a group of its own)",
            len(groups) - int(alone.sum()),
            len(groups),
            len(np.unique(groups[~alone])),
            int(alone.sum()),
        )
    return groups


@dataclass
class TableSource:
    """What a run's table is built from: the config (data, qrels, mining settings), the model being
    trained (it mines, unless data.hard_negatives.model names another), the accelerator (mining is
    sharded over its processes) and the run directory (mined files go under hard_negatives/)."""

    config: Config
    encoder: Encoder
    accelerator: Accelerator
    out: Path


def load_table(source: TableSource, epoch: int = 0, resuming: bool = False) -> TrainTable:
    """The training rows as a table, with the passages known relevant to each question (the whole
    table's and the qrels'), and, when data.hard_negatives.k > 0, the negatives mined for each
    question appended to its rows' own. Mining at epoch 0 may reuse a complete earlier file."""
    config = source.config
    pairs = load_pairs(config.data.train, config.data.train_split)
    relevant = relevance_map(config, pairs, log=epoch == 0)
    if config.data.hard_negatives.k:
        pairs = with_mined_negatives(source, pairs, relevant, epoch, resuming)
    return mixed_table(config, pairs, relevant, log=epoch == 0)


def mixed_table(config: Config, pairs: PairsData, relevant: dict[str, set[str]], log: bool = False) -> TrainTable:
    """data.train's rows, then each data.mix source's (their own negatives, at most as many per row
    as data.train's rows have: every slot is encoded at every step; nothing is mined for them), in
    one table: each source's own relevance (every row's positive, for every row asking the
    question) joins data.train's, so masking holds across sources."""
    if not config.data.mix:
        return index_texts(pairs, relevant)
    sizes, joined, relevant = [len(pairs)], [pairs], {q: set(texts) for q, texts in relevant.items()}
    width = max(len(negatives) for negatives in pairs.negatives)  # data.train's negatives per row
    for source, rows in zip(config.data.mix, mix_rows(config)):
        extra = load_pairs(source.path, source.split)
        for question, texts in known_relevant(extra).items():
            relevant.setdefault(question, set()).update(texts)
        dropped = sum(max(len(negatives) - width, 0) for negatives in extra.negatives)
        extra.negatives = [negatives[:width] for negatives in extra.negatives]  # every slot is encoded each step
        sizes.append(len(extra))
        joined.append(extra)
        if log:
            logger.info(
                "data.mix: %s, %d rows: %d of every global batch%s",
                source.path,
                len(extra),
                rows,
                f"; {dropped} negatives past data.train's {width} per row left out" if dropped else "",
            )
    together = PairsData(
        [a for part in joined for a in part.anchors],
        [p for part in joined for p in part.positives],
        [row for part in joined for row in part.negatives],  # ragged: index_texts pads the empty slots
        " + ".join(part.source for part in joined),
    )
    return index_texts(together, relevant, source_rows=sizes)


def with_mined_negatives(
    source: TableSource, pairs: PairsData, relevant: dict[str, set[str]], epoch: int, resuming: bool = False
) -> PairsData:
    """Mine on every process (encoding is sharded; the main one searches and writes), then read the
    triplets back on all. A refresh (epoch > 0) mines with the model being trained, as it is now;
    a resumed run reads the refresh it was using (the weights that mined it are gone)."""
    config, accelerator = source.config, source.accelerator
    hn = config.data.hard_negatives
    directory = source.out / "hard_negatives" / (f"epoch{epoch}" if epoch else "start")
    if resuming and epoch:
        return merged_negatives(pairs, read_mined(directory, config), config)
    miner, identity = source.encoder, {"model": asdict(config.model)}
    if hn.model and epoch == 0:  # another model, read from its own files
        precision = "bf16" if accelerator.mixed_precision == "bf16" else "no"  # the run's, as its own model
        miner = Encoder.from_config(ModelConfig(hn.model, trust_remote_code=config.model.trust_remote_code), precision)
        miner, identity = miner.to(accelerator.device), {"model": hn.model}
    # The weights as they are (a model rebuilt in place, or trained for `epoch` epochs): a file is
    # reused only when mined with the very same weights.
    if hn.source == "bm25":  # no model ranks: the BM25 settings are fingerprinted by mine() instead
        identity = {}
    else:
        identity["weights"] = weights_digest(miner)
    if epoch:  # a refresh mines with weights no other run has: nothing to share
        hn = replace(hn, cache=None)
    report = mine(miner, pairs, relevant, hn, directory, identity, accelerator.is_main_process, config.lexical)
    if report is not None:
        logger.info("%s", report.format_report())
    accelerator.wait_for_everyone()
    return merged_negatives(pairs, load_pairs(directory / "triplets.jsonl"), config)


def read_mined(directory: Path, config: Config) -> PairsData:
    """A complete mined file, checked against its meta.json (a partial one is refused)."""
    try:
        recorded = json.loads((directory / "meta.json").read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{directory}: the mined negatives this run was using are unreadable ({err})") from None
    if reusable(directory, recorded) is None:
        raise DataError(f"{directory}: the mined negatives this run was using are incomplete")
    return load_pairs(directory / "triplets.jsonl")


def merged_negatives(pairs: PairsData, mined: PairsData, config: Config) -> PairsData:
    """Each row's own negatives, then the mined ones it does not already have."""
    if mined.anchors != pairs.anchors or mined.positives != pairs.positives:
        raise DataError(f"{mined.source}: rows do not match {config.data.train}")
    negatives = [own + [text for text in new if text not in own] for own, new in zip(pairs.negatives, mined.negatives)]
    return PairsData(pairs.anchors, pairs.positives, negatives, pairs.source)
