"""alt-profanity-check in closed form gives the library's probabilities caption by caption, and its
two tokenisers (the kernel for ASCII, the vectoriser's analyser for the rest) agree."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from profanity_check import predict_prob
from profanity_check.profanity_check import model, vectorizer

from audit.kernels.word_weights import word_weight_sums
from audit.profanity_linear import LinearProfanity

NASTY = [
    "",
    "a",
    "a b c d",  # only one-letter words: no token at all
    "the and of",  # stop words only
    "fuck",
    "FUCK you, Fuck YOU fuck",  # case and repeated words (counts, not presence)
    "fuck_you shit_head",  # _ is a word character: these are single unknown tokens
    "f.u.c.k s-h-i-t",
    "shit2 2shit shit 2",
    "damn damn damn damn damn damn damn damn damn damn " * 20,  # more than 64 words found
    "beautiful sunset over the lake, 4k wallpaper",
    "\t\nidiot\r\n\x00stupid\x7f",
    "café idiot",  # non-ASCII: the library's Unicode path
    "\u212aill yourself",  # Kelvin sign lower-cases to k
    "İdiot",  # dotted capital I
    "ｆｕｃｋ",  # fullwidth
    "id\u200biot",  # zero-width space
    "💩 shit 💩",
]


def test_closed_form_matches_library_on_nasty_captions() -> None:
    fast = LinearProfanity.from_model(vectorizer, model)
    np.testing.assert_allclose(fast.predict_prob(NASTY), predict_prob(NASTY), rtol=0, atol=1e-9)
    # the non-ASCII ones are not all near zero: the Unicode path is compared on real signal
    assert max(predict_prob([t for t in NASTY if not t.isascii()])) > 0.5


def test_closed_form_matches_library_on_vocabulary_soup() -> None:
    rng = np.random.default_rng(7)
    vocab = sorted(w for w in vectorizer.vocabulary_ if w.isascii())
    seps = [" ", ", ", "-", ".", "!!", "\n", "_", "'", "  ", "/"]
    texts = []
    for _ in range(3000):
        words = rng.choice(vocab, size=int(rng.integers(0, 30)))
        parts = []
        for w in words:
            w = str(w)
            style = rng.integers(0, 3)
            parts.append(w.upper() if style == 0 else w.title() if style == 1 else w)
            parts.append(str(rng.choice(seps)))
        texts.append("".join(parts))
    fast = LinearProfanity.from_model(vectorizer, model)
    np.testing.assert_allclose(fast.predict_prob(texts), predict_prob(texts), rtol=0, atol=1e-9)
    sums, squares, ascii_ok = word_weight_sums(pa.array(texts), fast._table, fast._weights)
    assert ascii_ok.all()
    for i in range(0, len(texts), 37):  # the analyser path gives the kernel's sums
        want_sums, want_square = fast._unicode_sums(texts[i])
        np.testing.assert_allclose(sums[i], want_sums, rtol=1e-12, atol=1e-12)
        assert squares[i] == pytest.approx(want_square, rel=1e-12, abs=1e-12)
    # the soup spans the model's range, so the comparison is not only of near-zero values
    assert predict_prob(texts).max() > 0.9 and predict_prob(texts).min() < 0.1


def test_empty_batch() -> None:
    fast = LinearProfanity.from_model(vectorizer, model)
    assert fast.predict_prob([]).shape == (0,)


def test_refuses_a_vectoriser_it_does_not_reproduce() -> None:
    import copy

    other = copy.deepcopy(vectorizer)
    other.set_params(sublinear_tf=True)
    with pytest.raises(ValueError, match="vectoriser"):
        LinearProfanity.from_model(other, model)


def test_package_weights_are_cached_and_a_broken_cache_entry_is_rebuilt(tmp_path, monkeypatch) -> None:
    from audit.profanity_linear import ProfanityWeights, package_weights

    monkeypatch.setenv("MMAUDIT_CACHE_DIR", str(tmp_path))
    first = package_weights()
    (entry,) = (tmp_path / "profanity").glob("*.npz")
    again = ProfanityWeights.load(entry)
    want = ProfanityWeights.of_model(vectorizer, model)
    for got in (first, again):
        assert got.words == want.words
        np.testing.assert_array_equal(got.weights, want.weights)
        np.testing.assert_array_equal(got.intercept, want.intercept)
    entry.write_bytes(b"not an npz")
    rebuilt = package_weights()
    assert rebuilt.words == want.words and ProfanityWeights.load(entry).words == want.words
    texts = ["fuck you", "café idiot", "lovely day"]
    np.testing.assert_allclose(LinearProfanity(rebuilt).predict_prob(texts), predict_prob(texts), atol=1e-9)
