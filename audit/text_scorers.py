"""Offline text-safety scorers whose real weights ship in PyPI packages.

Each scorer maps a batch of captions to named score columns (declared in audit.schemas) and
records which model and version produced them.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Protocol

import numpy as np

from audit.config import TextSettings
from audit.errors import ModelLoadError
from audit.schemas import ModelRecord


class TextScorer(Protocol):
    name: str
    columns: tuple[str, ...]
    record: ModelRecord

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray | list]: ...


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class ProfanityCheckScorer:
    """alt-profanity-check: a linear SVM over tf-idf features trained on offensive-language data."""

    name = "profanity_check"
    columns = ("text_offensive_prob",)

    def __init__(self) -> None:
        from profanity_check import predict_prob

        self._predict_prob = predict_prob
        self.record = ModelRecord(
            name="alt-profanity-check",
            source="package",
            weights="package",
            version=_version("alt-profanity-check"),
        )

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if not texts:
            return {"text_offensive_prob": np.zeros(0, np.float32)}
        return {"text_offensive_prob": np.asarray(self._predict_prob(list(texts)), dtype=np.float32)}


class HateSonarScorer:
    """hatesonar: Davidson et al.'s hate / offensive / neither classifier as an ONNX graph."""

    name = "hatesonar"
    columns = ("text_hate_prob", "text_sonar_offensive_prob")

    def __init__(self) -> None:
        import onnxruntime as ort
        from hatesonar.api import DEFAULT_MODEL_FILE

        try:
            self._session = ort.InferenceSession(str(DEFAULT_MODEL_FILE), providers=["CPUExecutionProvider"])
        except Exception as e:
            if "locale" in str(e).lower():
                raise ModelLoadError(
                    "hatesonar needs the en_US.UTF-8 locale: run `make setup` (or locale-gen en_US.UTF-8)"
                ) from None
            raise ModelLoadError(f"hatesonar model could not be loaded: {str(e).splitlines()[0]}") from None
        self.record = ModelRecord(
            name="hatesonar",
            source=str(DEFAULT_MODEL_FILE.name),
            weights="package",
            version=_version("hatesonar"),
        )

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if not texts:
            empty = np.zeros(0, np.float32)
            return {"text_hate_prob": empty, "text_sonar_offensive_prob": empty}
        _labels, probs = self._session.run(None, {"text": np.asarray(list(texts), dtype=object)})
        # the graph ends in a ZipMap: one {class_index: probability} dict per text
        probs = np.asarray([[p[0], p[1], p[2]] for p in probs], dtype=np.float32)
        return {"text_hate_prob": probs[:, 0], "text_sonar_offensive_prob": probs[:, 1]}


def load_text_scorers(
    settings: TextSettings, device: str = "cpu", *, offline: bool = True
) -> list[TextScorer]:
    """Build the configured scorers once (per worker), in the configured order."""
    from audit.detoxify_scorer import DetoxifyScorer
    from audit.lexicon import LexiconScorer
    from audit.pii import PiiScorer

    factories = {
        "profanity_check": ProfanityCheckScorer,
        "hatesonar": HateSonarScorer,
        "lexicon": lambda: LexiconScorer(settings.lexicons),
        "pii": PiiScorer,
        "detoxify": lambda: DetoxifyScorer(settings.detoxify, device, offline=offline),
    }
    return [factories[name]() for name in settings.scorers]
