"""Zero-shot concept probes: versioned YAML prompt banks turned into CLIP text-embedding matrices."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit.config import packaged_file, safe_load
from audit.errors import ConfigError
from audit.kernels.similarity import l2_normalize


class Concept(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    description: str = ""
    group: str = "harm"
    threshold: float
    prompts: tuple[str, ...] = Field(min_length=1)
    negatives: tuple[str, ...] = ()
    combination_only: bool = False


class ConceptBank(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    name: str
    concepts: tuple[Concept, ...] = Field(min_length=1)
    sha256: str = ""


def load_concept_bank(ref: str) -> ConceptBank:
    """A packaged bank by name ('concepts') or a YAML file."""
    path = Path(ref) if ref.endswith((".yaml", ".yml")) else packaged_file("prompts", f"{ref}.yaml")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"clip.concepts: no prompt bank {path}") from None
    try:
        bank = ConceptBank.model_validate(
            {**safe_load(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"{path}: field '{'.'.join(map(str, first['loc']))}': {first['msg']}") from None
    ids = [c.id for c in bank.concepts]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: concept ids must be unique")
    return bank


@dataclass
class ConceptProbes:
    """A bank embedded by one CLIP model: one unit vector per concept, negatives per concept."""

    bank: ConceptBank
    matrix: np.ndarray  # (K, D) float32, rows L2-normalised means of the prompt embeddings
    negatives: list[np.ndarray]  # per concept (n_neg, D)

    @classmethod
    def build(cls, bank: ConceptBank, encode_texts) -> ConceptProbes:
        means, negatives = [], []
        for concept in bank.concepts:
            emb = l2_normalize(encode_texts(list(concept.prompts)))
            means.append(emb.mean(axis=0))
            negatives.append(
                l2_normalize(encode_texts(list(concept.negatives)))
                if concept.negatives
                else np.zeros((0, emb.shape[1]))
            )
        return cls(bank, l2_normalize(np.stack(means)).astype(np.float32), negatives)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.bank.concepts]

    @functools.cached_property
    def _scoring_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(concepts followed by every negative prompt, as one (K + M, D) matrix; the concepts that
        have negatives; where each one's negatives start among the M columns)."""
        negs = [n for n in self.negatives if len(n)]
        with_neg = np.asarray([c for c, n in enumerate(self.negatives) if len(n)], np.int64)
        sizes = [len(n) for n in negs]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else with_neg
        rows = [self.matrix, *(np.asarray(n, np.float32) for n in negs)]
        return np.ascontiguousarray(np.concatenate(rows), np.float32), with_neg, starts

    def score(self, embeddings: np.ndarray, *, normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(scores (N, K) cosine to each concept, hits (N, K) bool: threshold reached and every
        negative prompt beaten).

        Scored from the block-int8 codes the run stores, with the fused kernel, so an audit of the
        stored embeddings gives the same numbers (quantizing dequantized codes is exact); the
        negative prompts are scored in the same kernel call, as extra concepts."""
        from audit.embedding_store import block_size_for
        from audit.kernels.dispatch import get_kernel
        from audit.kernels.quantize_memo import quantize_once

        # ``normalized``: the rows are unit vectors already (the CLIP stage's), quantized once
        rows = embeddings if normalized else l2_normalize(embeddings)
        q = quantize_once(rows, block_size_for(embeddings.shape[1]), get_kernel("quantize_int8", "cpu"))
        matrix, with_neg, starts = self._scoring_matrix
        found = get_kernel("concept_scores_int8", "cpu")(q, matrix, k=0)
        every = np.asarray(found.scores, np.float32)
        k = len(self.bank.concepts)
        scores = np.ascontiguousarray(every[:, :k])
        thresholds = np.asarray([c.threshold for c in self.bank.concepts], np.float32)
        hits = scores >= thresholds
        if with_neg.size:
            best_negative = np.maximum.reduceat(every[:, k:], starts, axis=1)
            hits[:, with_neg] &= scores[:, with_neg] > best_negative
        return scores, hits

    def describe_arrays(self, scores: np.ndarray, hits: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """``describe`` as Arrow arrays, without a Python object per row: (list<string> of the harm
        concepts hit per row, best first; string of the closest identity probe hit, or null)."""
        concepts = self.bank.concepts
        ids = pa.array([c.id for c in concepts], pa.string())
        harm = np.asarray([k for k, c in enumerate(concepts) if c.group != "identity"], np.int64)
        identity = np.asarray([k for k, c in enumerate(concepts) if c.group == "identity"], np.int64)
        n = scores.shape[0]
        order = np.argsort(-scores[:, harm], axis=1, kind="stable")  # ties: the lower index first
        hit_sorted = np.take_along_axis(hits[:, harm], order, axis=1)
        offsets = np.concatenate([[0], np.cumsum(hit_sorted.sum(axis=1))]).astype(np.int32)
        values = ids.take(pa.array(harm[order][hit_sorted], pa.int64()))
        hit_lists = pa.ListArray.from_arrays(pa.array(offsets), values, type=pa.list_(pa.string()))
        if not identity.size:
            return hit_lists, pa.nulls(n, pa.string())
        masked = np.where(hits[:, identity], scores[:, identity], -np.inf)
        best = identity[np.argmax(masked, axis=1)]  # the first of equal scores, as max() picks
        found = hits[:, identity].any(axis=1)
        top = ids.take(pa.array(best, pa.int64(), mask=~found))
        return hit_lists, top

    def describe(self, scores: np.ndarray, hits: np.ndarray) -> tuple[list[list[str]], list[str | None]]:
        """Per row: harm concepts hit (best first; combination-only ones included, for rules) and
        the closest identity probe that is a hit."""
        hit_lists, identity_top = self.describe_arrays(scores, hits)
        return hit_lists.to_pylist(), identity_top.to_pylist()


def reportable(ids: Sequence[str], bank: ConceptBank) -> list[str]:
    """Concept hits that may be shown alone (not combination-only)."""
    alone = {c.id for c in bank.concepts if not c.combination_only}
    return [i for i in ids if i in alone]
