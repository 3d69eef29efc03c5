"""Models built once per worker process and reused by every shard task it runs.

Only what a shard's rows need is built (issue 12's profile: 44 s per worker loading models that
precomputed-embedding rows never use): the text scorers, hash lists, rules and language detector
when the worker starts; CLIP on its first encode (``audit.clip_info.LazyClip``: rows with
precomputed embeddings need none, and the prompt bank's embeddings come from the on-disk cache);
the pixel models (open_nsfw, NudeNet, OCR) and the CLIP NSFW head on first use, i.e. for the first
batch that has decoded images or image embeddings to score.
"""

from __future__ import annotations

import functools

from audit.clip_info import LazyClip, load_probes, probes_cached
from audit.concepts import ConceptProbes, load_concept_bank
from audit.config import AuditConfig
from audit.devices import resolve_device
from audit.hashlists import KnownBadLists
from audit.image_scorers import ClipNsfwScorer, OpenNsfwScorer
from audit.languages import LanguageDetector
from audit.nudenet_scorer import NudeNetScorer
from audit.ocr import OcrReader
from audit.rules import RuleSet, load_rules
from audit.schemas import ModelRecord
from audit.text_scorers import TextScorer, load_text_scorers

# models built on first use, by the Models attribute that holds them
LAZY = ("opennsfw", "clip_nsfw", "nudenet", "ocr")


class Models:
    def __init__(self, cfg: AuditConfig) -> None:
        self.cfg = cfg
        self.device: str = resolve_device(cfg.device)
        threads = cfg.dask.threads_per_worker
        self.text: list[TextScorer] = load_text_scorers(
            cfg.text, self.device, offline=cfg.offline, threads=threads
        )
        images = cfg.images
        self.known_bad = KnownBadLists(
            images.known_bad_lists, images.phash_max_distance, images.pdq_max_distance
        )
        self.rules: RuleSet = load_rules(cfg.rules)
        self.languages: LanguageDetector | None = LanguageDetector(cfg.languages.min_confidence)
        self.clip = LazyClip(cfg.clip, self.device, offline=cfg.offline)
        bank = load_concept_bank(cfg.clip.concepts) if cfg.clip.concepts else None
        # the bank's embeddings and the CLIP facts (dimension, weights) from the cache, else built
        self.concepts: ConceptProbes | None = load_probes(self.clip, bank)

    def configured(self, name: str) -> bool:
        """Whether the config asks for lazy model ``name`` (without building it)."""
        images = self.cfg.images
        return images.ocr.enabled if name == "ocr" else name in images.scorers

    @functools.cached_property
    def opennsfw(self) -> OpenNsfwScorer | None:
        if not self.configured("opennsfw"):
            return None
        return OpenNsfwScorer(self.device, intra_op_threads=self.cfg.dask.threads_per_worker)

    @functools.cached_property
    def clip_nsfw(self) -> ClipNsfwScorer | None:
        images = self.cfg.images
        if not self.configured("clip_nsfw"):
            return None
        return ClipNsfwScorer(
            images.clip_nsfw_weights, self.clip.embed_dim, images.clip_nsfw_hidden, self.device
        )

    @functools.cached_property
    def nudenet(self) -> NudeNetScorer | None:
        if not self.configured("nudenet"):
            return None
        return NudeNetScorer(self.device, intra_op_threads=self.cfg.dask.threads_per_worker)

    @functools.cached_property
    def ocr(self) -> OcrReader | None:
        images = self.cfg.images
        if not self.configured("ocr"):
            return None
        return OcrReader(
            device=self.device,
            threads=self.cfg.dask.threads_per_worker,
            max_side=images.ocr.max_side,
            min_line_confidence=images.ocr.min_line_confidence,
            max_chars=images.ocr.max_chars,
        )

    def built(self) -> list[str]:
        """The lazy models built so far in this process (what the manifest may say ran)."""
        return [name for name in LAZY if self.__dict__.get(name) is not None]

    def records(self) -> dict[str, ModelRecord]:
        out = {"clip": self.clip.record, **{t.name: t.record for t in self.text}}
        lazy = [self.__dict__.get(name) for name in ("opennsfw", "clip_nsfw", "nudenet")]
        for scorer in (*lazy, self.languages):
            if scorer is not None:
                out[scorer.name] = scorer.record
        ocr = self.__dict__.get("ocr")
        if ocr is not None:
            out[ocr.name] = ocr.record
            out.update(ocr.records)
        if self.concepts is not None:
            bank = self.concepts.bank
            out["concepts"] = ModelRecord(
                name=bank.name, source=f"v{bank.version}", weights="file", sha256=bank.sha256
            )
        for name, sha in self.known_bad.sha256.items():
            out[f"known_bad:{name}"] = ModelRecord(name=name, source="hash list", weights="file", sha256=sha)
        return out


def models_cached(cfg: AuditConfig) -> bool:
    """Whether this worker would build its models from the on-disk cache only (the prompt bank's
    embeddings are there): then every worker may warm up at once, none encodes the bank."""
    bank = load_concept_bank(cfg.clip.concepts) if cfg.clip.concepts else None
    return bank is None or probes_cached(cfg.clip, resolve_device(cfg.device), cfg.offline, bank)


@functools.lru_cache(maxsize=2)
def _build(config_json: str) -> Models:
    return Models(AuditConfig.model_validate_json(config_json))


def get_models(cfg: AuditConfig) -> Models:
    """Keyed by the scoring part of the config, so a worker never builds the same models twice."""
    scoring_only = AuditConfig.model_validate(cfg.scoring_dict())
    return _build(scoring_only.model_dump_json())


def limit_threads(threads: int) -> None:
    """Each Dask worker is one core's worth of threads (``dask.threads_per_worker``): Numba's
    parallel kernels and torch would otherwise start a thread per core in every worker, and
    workers x cores threads contend for the same cores. Numba's setting holds for the calling
    thread (the task's), so it is made per task; torch's is process-wide, and torch is never
    imported for it (OMP_NUM_THREADS is read when it is)."""
    import os
    import sys

    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
