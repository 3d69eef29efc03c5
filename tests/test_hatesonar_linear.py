"""hatesonar's graph in closed form gives onnxruntime's probabilities caption by caption."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hatesonar.api import DEFAULT_MODEL_FILE

from audit.hatesonar_linear import LinearHateSonar
from audit.text_scorers import HateSonarScorer

NASTY = [
    "", "a", "###", "you bitch", "YOU BITCH", "bitch bitch bitch", "bitch_ass", "bitch ass",
    "b1tch 4ss h0e", "i hate all of them", "\t\nfaggot\r\n\x00trash\x7f", "hello " * 300,
    "you\u212aitch", "\u0130bitch", "bitch\u00e9bitch", "\uff42\uff49\uff54\uff43\uff48", "\U0001f4a9 hoe",
]  # fmt: skip


@pytest.fixture(scope="module")
def scorer() -> HateSonarScorer:
    return HateSonarScorer()


def _graph(scorer: HateSonarScorer, texts: list[str]) -> np.ndarray:
    return scorer._graph(texts)


def test_closed_form_matches_the_graph_on_nasty_captions(scorer: HateSonarScorer) -> None:
    texts = [t.encode().decode("unicode_escape") if "\\" in t else t for t in NASTY]
    got = scorer.score(texts)
    want = _graph(scorer, texts)
    np.testing.assert_allclose(got["text_hate_prob"], want[:, 0], atol=2e-6)
    np.testing.assert_allclose(got["text_sonar_offensive_prob"], want[:, 1], atol=2e-6)
    _, done = scorer._linear.probabilities(texts)
    assert done.tolist() == [t.isascii() for t in texts]  # the others went through the graph


def test_closed_form_matches_the_graph_on_vocabulary_soup(scorer: HateSonarScorer) -> None:
    model = onnx.load(str(DEFAULT_MODEL_FILE))
    tfidf = next(n for n in model.graph.node if n.op_type == "TfIdfVectorizer")
    pool = next(onnx.helper.get_attribute_value(a) for a in tfidf.attribute if a.name == "pool_strings")
    vocab = [w.decode() for w in pool]
    rng = np.random.default_rng(3)
    seps = [" ", ", ", "-", ".", "!!", "\n", "'", "  ", "/", "#", "@"]
    texts = []
    for _ in range(3000):
        parts = []
        for w in rng.choice(vocab, size=int(rng.integers(0, 25))):
            w = str(w)
            parts.append(w.upper() if rng.integers(0, 3) == 0 else w)
            parts.append(str(rng.choice(seps)))
        texts.append("".join(parts))
    got, done = scorer._linear.probabilities(texts)
    assert done.all()
    want = _graph(scorer, texts)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert want[:, 0].max() > 0.3 and want[:, 1].max() > 0.9  # real signal, not only the prior


def test_refuses_a_graph_it_does_not_reproduce() -> None:
    model = onnx.load(str(DEFAULT_MODEL_FILE))
    tok = next(n for n in model.graph.node if n.op_type == "Tokenizer")
    for a in tok.attribute:
        if a.name == "tokenexp":
            a.s = b"[a-z]+"
    with pytest.raises(ValueError, match="Tokenizer"):
        LinearHateSonar(model)
