"""Models built once per worker process and reused by every shard task it runs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from audit.clip_model import ClipModel, load_clip
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


@dataclass
class Models:
    clip: ClipModel
    text: list[TextScorer]
    opennsfw: OpenNsfwScorer | None
    clip_nsfw: ClipNsfwScorer | None
    known_bad: KnownBadLists
    concepts: ConceptProbes | None
    rules: RuleSet
    device: str
    languages: LanguageDetector | None = None
    nudenet: NudeNetScorer | None = None
    ocr: OcrReader | None = None

    def records(self) -> dict[str, ModelRecord]:
        out = {"clip": self.clip.record, **{t.name: t.record for t in self.text}}
        for scorer in (self.opennsfw, self.clip_nsfw, self.languages, self.nudenet):
            if scorer is not None:
                out[scorer.name] = scorer.record
        if self.ocr is not None:
            out[self.ocr.name] = self.ocr.record
            out.update(self.ocr.records)
        if self.concepts is not None:
            bank = self.concepts.bank
            out["concepts"] = ModelRecord(
                name=bank.name, source=f"v{bank.version}", weights="file", sha256=bank.sha256
            )
        for name, sha in self.known_bad.sha256.items():
            out[f"known_bad:{name}"] = ModelRecord(name=name, source="hash list", weights="file", sha256=sha)
        return out


@functools.lru_cache(maxsize=2)
def _build(config_json: str) -> Models:
    cfg = AuditConfig.model_validate_json(config_json)
    device = resolve_device(cfg.device)
    clip = load_clip(cfg.clip, device, offline=cfg.offline)
    images = cfg.images
    return Models(
        clip=clip,
        text=load_text_scorers(cfg.text, device, offline=cfg.offline, threads=cfg.dask.threads_per_worker),
        opennsfw=OpenNsfwScorer(device, intra_op_threads=cfg.dask.threads_per_worker)
        if "opennsfw" in images.scorers
        else None,
        clip_nsfw=ClipNsfwScorer(images.clip_nsfw_weights, clip.embed_dim, images.clip_nsfw_hidden, device)
        if "clip_nsfw" in images.scorers
        else None,
        known_bad=KnownBadLists(images.known_bad_lists, images.phash_max_distance, images.pdq_max_distance),
        concepts=ConceptProbes.build(load_concept_bank(cfg.clip.concepts), clip.encode_texts)
        if cfg.clip.concepts
        else None,
        rules=load_rules(cfg.rules),
        device=device,
        languages=LanguageDetector(cfg.languages.min_confidence),
        nudenet=NudeNetScorer(device, intra_op_threads=cfg.dask.threads_per_worker)
        if "nudenet" in images.scorers
        else None,
        ocr=OcrReader(
            device=device,
            threads=cfg.dask.threads_per_worker,
            max_side=images.ocr.max_side,
            min_line_confidence=images.ocr.min_line_confidence,
            max_chars=images.ocr.max_chars,
        )
        if images.ocr.enabled
        else None,
    )


def get_models(cfg: AuditConfig) -> Models:
    """Keyed by the scoring part of the config, so a worker never builds the same models twice."""
    scoring_only = AuditConfig.model_validate(cfg.scoring_dict())
    return _build(scoring_only.model_dump_json())
