"""alt-profanity-check's model evaluated in closed form: its tf-idf vectoriser, five calibrated
linear SVMs and their sigmoids reduced to per-word weights, summed by a Numba kernel over the
captions' bytes.

Profiled on the cascade's cheap tier, the library spent ~20 us a caption in scikit-learn's Python
tokeniser and sparse-matrix assembly. The model is linear in the word counts, so for each fold k

    decision_k = sum_j count_j * idf_j * coef_kj / ||count * idf||_2 + intercept_k
    p = mean_k 1 / (1 + exp(A_k * decision_k + B_k))

which is what ``CalibratedClassifierCV.predict_proba`` computes. ASCII captions are tokenised by
the kernel; a caption with another character as the vectoriser does it (``str.lower``, then its
token pattern with Python's Unicode ``\\w``), one at a time, without the library's per-call
sparse-matrix overhead. Stop words never reach the vocabulary lookup, as in the vectoriser. A
test compares both paths with the library caption by caption.

The weights are read from the package's model once and cached (keyed by the model files' sha256),
so a worker does not import scikit-learn and unpickle the models (profiled: 1.6 s of a worker's
2.4 s warm-up).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa

from audit.cache_dir import user_cache_dir
from audit.kernels.word_weights import WordTable, l2_scaled, word_weight_sums

log = logging.getLogger(__name__)

# the vectoriser settings this closed form reproduces; anything else falls back to the library
_EXPECTED = {
    "analyzer": "word",
    "lowercase": True,
    "ngram_range": (1, 1),
    "norm": "l2",
    "use_idf": True,
    "sublinear_tf": False,
    "binary": False,
    "token_pattern": r"(?u)\b\w\w+\b",
    "tokenizer": None,
    "preprocessor": None,
    "strip_accents": None,
}


@dataclass(frozen=True)
class ProfanityWeights:
    """The model reduced to words: row i of ``weights`` is word i's idf, then idf * coef per fold."""

    words: list[str]
    weights: np.ndarray  # (words, 1 + folds) float64
    intercept: np.ndarray  # (folds,)
    a: np.ndarray  # sigmoid calibration per fold
    b: np.ndarray

    @classmethod
    def of_model(cls, vectorizer: object, model: object) -> ProfanityWeights:
        params = vectorizer.get_params()  # type: ignore[attr-defined]
        if any(params.get(k) != v for k, v in _EXPECTED.items()):
            raise ValueError("alt-profanity-check's vectoriser is not the one this closed form reads")
        folds = model.calibrated_classifiers_  # type: ignore[attr-defined]
        if any(f.method != "sigmoid" or len(f.calibrators) != 1 for f in folds):
            raise ValueError("alt-profanity-check's calibration is not one sigmoid per fold")
        stop = vectorizer.get_stop_words() or frozenset()  # type: ignore[attr-defined]
        vocabulary = {w: j for w, j in vectorizer.vocabulary_.items() if w not in stop}  # type: ignore[attr-defined]
        words = sorted(vocabulary)
        columns = np.asarray([vocabulary[w] for w in words], np.int64)
        idf = np.asarray(vectorizer.idf_, np.float64)[columns]  # type: ignore[attr-defined]
        coef = np.stack([np.asarray(f.estimator.coef_, np.float64).reshape(-1) for f in folds])[:, columns]
        return cls(
            words=words,
            weights=np.column_stack([idf, idf[:, None] * coef.T]),
            intercept=np.asarray([float(np.ravel(f.estimator.intercept_)[0]) for f in folds]),
            a=np.asarray([f.calibrators[0].a_ for f in folds], np.float64),
            b=np.asarray([f.calibrators[0].b_ for f in folds], np.float64),
        )

    def save(self, path: os.PathLike) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix=".tmp", delete=False) as f:
            np.savez(f, words=np.frombuffer(json.dumps(self.words).encode(), np.uint8), weights=self.weights,
                     intercept=self.intercept, a=self.a, b=self.b)  # fmt: skip
        os.replace(f.name, path)  # workers starting together may write the same entry

    @classmethod
    def load(cls, path: os.PathLike) -> ProfanityWeights:
        with np.load(path) as z:
            words = json.loads(bytes(z["words"]))
            return cls(words, z["weights"], z["intercept"], z["a"], z["b"])


def _package_key() -> str:
    """The package's model files and version: what the cached weights were read from."""
    h = hashlib.sha256(metadata.version("alt-profanity-check").encode())
    # found without importing the package: its __init__ imports scikit-learn and unpickles both
    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("profanity_check")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    for name in ("vectorizer.joblib", "model.joblib"):
        h.update((data / name).read_bytes())
    return h.hexdigest()[:32]


def package_weights() -> ProfanityWeights:
    """The installed model's weights, from mmaudit's cache when it holds them (else read and cached)."""
    path = user_cache_dir("profanity", f"{_package_key()}.npz")
    try:
        return ProfanityWeights.load(path)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass
    from profanity_check.profanity_check import model, vectorizer

    weights = ProfanityWeights.of_model(vectorizer, model)
    try:
        weights.save(path)
    except OSError as e:  # a read-only cache costs a rebuild next time, nothing else
        log.warning("could not cache profanity-check's weights in %s: %s", path.parent, e)
    return weights


_TOKEN = re.compile(_EXPECTED["token_pattern"])


class LinearProfanity:
    """``predict_prob`` of alt-profanity-check, ASCII captions in closed form."""

    def __init__(self, weights: ProfanityWeights) -> None:
        self._vocabulary = {w: i for i, w in enumerate(weights.words)}
        self._all_weights = weights.weights
        ascii_rows = np.asarray([i for i, w in enumerate(weights.words) if w.isascii()], np.int64)
        self._weights = weights.weights[ascii_rows]
        self._table = WordTable.of([weights.words[i] for i in ascii_rows.tolist()])
        self._intercept, self._a, self._b = weights.intercept, weights.a, weights.b

    @classmethod
    def from_model(cls, vectorizer: object, model: object) -> LinearProfanity:
        return cls(ProfanityWeights.of_model(vectorizer, model))

    def predict_prob(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts), np.float64)
        if not len(texts):
            return out
        values = pa.array(texts, pa.large_string())
        sums, squares, ascii_ok = word_weight_sums(values, self._table, self._weights)
        for i in np.flatnonzero(~ascii_ok).tolist():
            sums[i], squares[i] = self._unicode_sums(texts[i])
        decision = l2_scaled(sums, squares) + self._intercept
        out[:] = (1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1)
        return out

    def _unicode_sums(self, text: str) -> tuple[np.ndarray, float]:
        """The kernel's sums for one caption, tokenised as the vectoriser does (lower, findall)."""
        found = map(self._vocabulary.get, _TOKEN.findall(text.lower()))
        counts = Counter(j for j in found if j is not None)
        if not counts:
            return np.zeros(self._all_weights.shape[1]), 0.0
        rows = np.fromiter(counts.keys(), np.int64, len(counts))
        c = np.fromiter(counts.values(), np.float64, len(counts))
        w = self._all_weights[rows]
        return c @ w, float(((c * w[:, 0]) ** 2).sum())
