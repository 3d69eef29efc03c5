"""hatesonar's ONNX graph evaluated in closed form for ASCII captions.

The graph (checked node by node below; anything else is refused) is lower-casing, a Tokenizer
emitting runs of ``[a-zA-Z0-9_]``, unigram term counts over a 28,302-word vocabulary, times idf,
an L2 normaliser and a 3-class linear classifier with a softmax:

    p = softmax(sum_j count_j * idf_j * coef_cj / ||count * idf||_2 + intercept_c)

Profiled, onnxruntime spent ~118 us a caption in its string ops; the same sums from the Numba
word kernel take ~2 us. The graph computes in float32, this in float64: they agree to ~1e-6.
A caption with a non-ASCII character goes through the graph itself (its lower-casing can turn
such characters into ASCII letters, e.g. the Kelvin sign into ``k``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from audit.kernels.word_weights import WordTable, l2_scaled, word_weight_sums

_NODES = (
    "Reshape", "StringNormalizer", "Tokenizer", "Flatten", "TfIdfVectorizer", "Mul", "Normalizer",
    "LinearClassifier", "Cast", "Normalizer",
)  # fmt: skip
_EXPECTED_ATTRIBUTES = {
    "StringNormalizer": {"case_change_action": b"LOWER"},
    "Tokenizer": {"tokenexp": b"[a-zA-Z0-9_]+", "mark": 0, "mincharnum": 1},
    "TfIdfVectorizer": {"mode": b"TF", "min_gram_length": 1, "max_gram_length": 1, "max_skip_count": 0},
    "LinearClassifier": {"post_transform": b"SOFTMAX", "classlabels_ints": [0, 1, 2]},
}


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class LinearHateSonar:
    """(hate, offensive, neither) probabilities of hatesonar's graph, ASCII captions in closed form."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        nodes = [n for n in model.graph.node if n.op_type != "ZipMap"]
        if tuple(n.op_type for n in nodes) != _NODES:
            raise ValueError("hatesonar's graph is not the one this closed form reads")
        attrs = {n.op_type: _attributes(n) for n in nodes if n.op_type in _EXPECTED_ATTRIBUTES}
        for op, want in _EXPECTED_ATTRIBUTES.items():
            if any(attrs[op].get(k) != v for k, v in want.items()):
                raise ValueError(f"hatesonar's {op} is not the one this closed form reads")
        norms = [_attributes(n).get("norm") for n in nodes if n.op_type == "Normalizer"]
        if norms != [b"L2", b"L1"]:
            raise ValueError("hatesonar's normalisers are not the ones this closed form reads")
        tfidf, linear = attrs["TfIdfVectorizer"], attrs["LinearClassifier"]
        initial = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        mul = next(n for n in nodes if n.op_type == "Mul")
        idf_by_column = np.asarray(initial[mul.input[1]], np.float64)
        words = [w.decode("ascii") for w in tfidf["pool_strings"]]
        columns = np.asarray(tfidf["ngram_indexes"], np.int64)
        classes = len(linear["classlabels_ints"])
        coef = np.asarray(linear["coefficients"], np.float64).reshape(classes, -1)
        idf = idf_by_column[columns]
        # per pool word: its idf (for the norm), then idf * coef per class
        self._weights = np.column_stack([idf, idf[:, None] * coef[:, columns].T])
        self._intercept = np.asarray(linear["intercepts"], np.float64)
        self._table = WordTable.of(words)

    def probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """((n, 3) probabilities, mask of the rows computed here); the others need the graph."""
        sums, squares, ascii_ok = word_weight_sums(
            pa.array(texts, pa.large_string()), self._table, self._weights, min_len=1
        )
        z = l2_scaled(sums, squares) + self._intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True), ascii_ok
