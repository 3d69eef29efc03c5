"""alt-profanity-check's model evaluated in closed form: its tf-idf vectoriser, five calibrated
linear SVMs and their sigmoids reduced to per-word weights, summed by a Numba kernel over the
captions' bytes.

Profiled on the cascade's cheap tier, the library spent ~20 us a caption in scikit-learn's Python
tokeniser and sparse-matrix assembly. The model is linear in the word counts, so for each fold k

    decision_k = sum_j count_j * idf_j * coef_kj / ||count * idf||_2 + intercept_k
    p = mean_k 1 / (1 + exp(A_k * decision_k + B_k))

which is what ``CalibratedClassifierCV.predict_proba`` computes. ASCII captions are tokenised by
the kernel; a caption with another character by the vectoriser's own analyser (Unicode ``\\w`` and
lower-casing), one at a time, without the library's per-call sparse-matrix overhead. A test
compares both paths with the library caption by caption.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from audit.kernels.word_weights import WordTable, ascii_words, word_weight_sums

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


class LinearProfanity:
    """``predict_prob`` of alt-profanity-check, ASCII captions in closed form."""

    def __init__(self, vectorizer: object, model: object) -> None:
        params = vectorizer.get_params()  # type: ignore[attr-defined]
        if any(params.get(k) != v for k, v in _EXPECTED.items()):
            raise ValueError("alt-profanity-check's vectoriser is not the one this closed form reads")
        folds = model.calibrated_classifiers_  # type: ignore[attr-defined]
        if any(f.method != "sigmoid" or len(f.calibrators) != 1 for f in folds):
            raise ValueError("alt-profanity-check's calibration is not one sigmoid per fold")
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_  # type: ignore[attr-defined]
        self._analyze = vectorizer.build_analyzer()  # type: ignore[attr-defined]
        idf = np.asarray(vectorizer.idf_, np.float64)  # type: ignore[attr-defined]
        coef = np.stack([np.asarray(f.estimator.coef_, np.float64).reshape(-1) for f in folds])
        # per vocabulary column: the word's idf (for the norm), then idf * coef per fold
        self._all_weights = np.column_stack([idf, idf[:, None] * coef.T])
        words, columns = ascii_words(self._vocabulary)
        self._weights = self._all_weights[columns]
        self._intercept = np.asarray([float(np.ravel(f.estimator.intercept_)[0]) for f in folds])
        self._a = np.asarray([f.calibrators[0].a_ for f in folds], np.float64)
        self._b = np.asarray([f.calibrators[0].b_ for f in folds], np.float64)
        self._table = WordTable.of(words)

    def predict_prob(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty(len(texts), np.float64)
        if not len(texts):
            return out
        values = pa.array(texts, pa.large_string())
        sums, squares, ascii_ok = word_weight_sums(values, self._table, self._weights)
        for i in np.flatnonzero(~ascii_ok).tolist():
            sums[i], squares[i] = self._unicode_sums(texts[i])
        norm = np.sqrt(squares)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(norm[:, None] > 0, sums[:, 1:] / norm[:, None], 0.0)
        decision = scaled + self._intercept
        out[:] = (1.0 / (1.0 + np.exp(self._a * decision + self._b))).mean(axis=1)
        return out

    def _unicode_sums(self, text: str) -> tuple[np.ndarray, float]:
        """The kernel's sums for one caption, tokenised by the vectoriser's own analyser."""
        counts = Counter(j for j in map(self._vocabulary.get, self._analyze(text)) if j is not None)
        if not counts:
            return np.zeros(self._all_weights.shape[1]), 0.0
        cols = np.fromiter(counts.keys(), np.int64, len(counts))
        c = np.fromiter(counts.values(), np.float64, len(counts))
        w = self._all_weights[cols]
        return c @ w, float(((c * w[:, 0]) ** 2).sum())
