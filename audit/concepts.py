"""Zero-shot concept probes: versioned YAML prompt banks turned into CLIP text-embedding matrices."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit.config import packaged_file
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
            {**yaml.safe_load(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
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

    def score(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (N, K) cosine to each concept, hits (N, K) bool: threshold reached and every
        negative prompt beaten).

        Scored from the block-int8 codes the run stores, with the fused kernel, so an audit of the
        stored embeddings gives the same numbers (quantizing dequantized codes is exact)."""
        from audit.embedding_store import block_size_for
        from audit.kernels.dispatch import get_kernel

        q = get_kernel("quantize_int8", "cpu")(
            l2_normalize(embeddings), block_size=block_size_for(embeddings.shape[1])
        )
        thresholds = np.asarray([c.threshold for c in self.bank.concepts], np.float32)
        k = min(3, len(thresholds))
        found = get_kernel("concept_scores_int8", "cpu")(q, self.matrix, k=k, threshold=thresholds)
        scores, hits = np.asarray(found.scores, np.float32), np.asarray(found.mask, bool).copy()
        x = l2_normalize(np.asarray(get_kernel("dequantize_int8", "cpu")(q), np.float32))
        for c, neg in enumerate(self.negatives):
            if len(neg):
                hits[:, c] &= scores[:, c] > (x @ neg.T.astype(np.float32)).max(axis=1)
        return scores, hits

    def describe(self, scores: np.ndarray, hits: np.ndarray) -> tuple[list[list[str]], list[str | None]]:
        """Per row: harm concepts hit (best first; combination-only ones included, for rules) and
        the closest identity probe that is a hit."""
        concepts = self.bank.concepts
        harm = [k for k, c in enumerate(concepts) if c.group != "identity"]
        identity = [k for k, c in enumerate(concepts) if c.group == "identity"]
        hit_lists: list[list[str]] = []
        identity_top: list[str | None] = []
        for i in range(scores.shape[0]):
            found = sorted((k for k in harm if hits[i, k]), key=lambda k: -scores[i, k])
            hit_lists.append([concepts[k].id for k in found])
            ident = [k for k in identity if hits[i, k]]
            identity_top.append(concepts[max(ident, key=lambda k: scores[i, k])].id if ident else None)
        return hit_lists, identity_top


def reportable(ids: Sequence[str], bank: ConceptBank) -> list[str]:
    """Concept hits that may be shown alone (not combination-only)."""
    alone = {c.id for c in bank.concepts if not c.combination_only}
    return [i for i in ids if i in alone]
