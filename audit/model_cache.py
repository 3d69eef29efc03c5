"""Models built once per worker process and reused by every shard task it runs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from audit.clip_model import ClipModel, load_clip
from audit.config import AuditConfig
from audit.devices import resolve_device
from audit.rules import RuleSet, load_rules
from audit.text_scorers import TextScorer, load_text_scorers


@dataclass
class Models:
    clip: ClipModel
    text: list[TextScorer]
    rules: RuleSet
    device: str


@functools.lru_cache(maxsize=2)
def _build(config_json: str) -> Models:
    cfg = AuditConfig.model_validate_json(config_json)
    device = resolve_device(cfg.device)
    return Models(
        clip=load_clip(cfg.clip, device, offline=cfg.offline),
        text=load_text_scorers(cfg.text.scorers),
        rules=load_rules(cfg.rules),
        device=device,
    )


def get_models(cfg: AuditConfig) -> Models:
    """Keyed by the scoring part of the config, so a worker never builds the same models twice."""
    scoring_only = AuditConfig.model_validate(cfg.scoring_dict())
    return _build(scoring_only.model_dump_json())
