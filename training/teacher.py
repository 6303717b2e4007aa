"""The teachers of the listwise distillation (loss.distill), whose ranking of each global batch's
candidates the model learns to reproduce alone.

FusedTeacher (loss.distill_teacher fused): the untouched model fused with BM25, scored on every
(question, candidate) of the batch.

The fused score is the evaluation's convex combination (retrieval/fusion.py's `normalized`): per question, the
dense cosine and the BM25 score are each min-max normalised over the candidates scored, then
`weight` x dense + (1 - weight) x BM25. The dense side is the model as it was before training,
encoded once at the start over the table's questions and passages; BM25 is the table's
LexicalPrior. Nothing here has a gradient.

RerankerTeacher (loss.distill_teacher reranker): a cross-encoder train_reranker.py saved, its raw
logit of each training row's question with the row's own positive and mined negatives, scored
once at the start. A question's other candidates in the batch are not scored (a cross-encoder
over every cell of the batch would cost G x M pairs a step); they take no teacher probability, so
the model is taught to keep its mass on the passages the cross-encoder judged, in its proportions.
"""

from __future__ import annotations

import numpy as np
import torch

from data import TrainTable
from model import Encoder
from retrieval.fusion import normalized
from retrieval.lexical import LexicalPrior
from retrieval.rerank import CrossEncoder


class FusedTeacher:
    def __init__(self, questions: np.ndarray, passages: np.ndarray, prior: LexicalPrior, weight: float):
        self.questions, self.passages = questions, passages  # (Q, D), (P, D) unit rows, float32
        self.prior, self.weight = prior, weight

    @classmethod
    def from_model(
        cls, encoder: Encoder, table: TrainTable, prior: LexicalPrior, weight: float, batch_size: int
    ) -> FusedTeacher:
        """Encode the table's questions and passages with `encoder` as it is now (before training)."""
        questions = encoder.encode_queries(table.anchor_texts, batch_size=batch_size, show_progress=True)
        passages = encoder.encode_documents(table.passage_texts, batch_size=batch_size, show_progress=True)
        unit = lambda x: torch.nn.functional.normalize(x.float(), dim=-1).numpy()  # noqa: E731 (no FAISS import here)
        return cls(unit(questions), unit(passages), prior, weight)

    def scores(self, question_ids: np.ndarray, passage_ids: np.ndarray) -> np.ndarray:
        """(G, M) float32 fused scores in [0, 1]: question question_ids[g] against passage
        passage_ids[m]; an empty slot (-1) scores 0 and is masked by the loss anyway."""
        valid = np.broadcast_to(passage_ids >= 0, (len(question_ids), len(passage_ids)))
        dense = self.questions[question_ids] @ self.passages[np.maximum(passage_ids, 0)].T  # (G, M)
        lexical = self.prior.scores(question_ids, passage_ids)  # (G, M)
        w = self.weight
        fused = w * normalized(dense, valid, "minmax") + (1 - w) * normalized(lexical, valid, "minmax")
        return fused.astype(np.float32)  # 0 at empty slots: normalized leaves them 0


class RerankerTeacher:
    def __init__(self, keys: np.ndarray, logits: np.ndarray, passages: int):
        self.keys, self.logits = keys, logits  # sorted question_id * passages + passage_id, and its logit
        self.passages = passages

    @classmethod
    def from_reranker(
        cls, ce: CrossEncoder, table: TrainTable, batch_size: int, progress: str | None = None
    ) -> RerankerTeacher:
        """Score every distinct (question, own positive or negative) text pair of `table`
        (`progress`: a bar with that name)."""
        rows = np.concatenate([table.positive_ids[:, None], table.negative_ids], axis=1)  # (N, 1 + k)
        questions = np.broadcast_to(table.anchor_ids[:, None], rows.shape)
        keys = np.unique(questions[rows >= 0] * len(table.passage_texts) + rows[rows >= 0])
        pairs = [
            (table.anchor_texts[key // len(table.passage_texts)], table.passage_texts[key % len(table.passage_texts)])
            for key in keys.tolist()
        ]
        return cls(keys, ce.score(pairs, batch_size, progress).astype(np.float32), len(table.passage_texts))

    def scores(self, question_ids: np.ndarray, passage_ids: np.ndarray) -> np.ndarray:
        """(G, M) float32 logits of question question_ids[g] with passage passage_ids[m]; -inf where
        that pair was not scored (another question's candidate, an empty slot -1)."""
        wanted = question_ids[:, None] * self.passages + np.maximum(passage_ids, 0)[None, :]  # (G, M)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        found = (self.keys[at] == wanted) & (passage_ids >= 0)[None, :]
        return np.where(found, self.logits[at], -np.inf).astype(np.float32)


Teacher = FusedTeacher | RerankerTeacher


def teacher_tensor(teacher: Teacher | None, table: TrainTable, global_rows: np.ndarray) -> torch.Tensor | None:
    """The teacher's (G, M) scores for a global batch in the loss's candidate layout, or None."""
    if teacher is None:
        return None
    candidates = np.concatenate([table.positive_ids[global_rows], table.negative_ids[global_rows].reshape(-1)])
    return torch.from_numpy(teacher.scores(table.anchor_ids[global_rows], candidates))
