"""FNV-1a over Arrow string buffers equals the textbook definition on the UTF-8 bytes."""

from __future__ import annotations

import pyarrow as pa

from audit.kernels.text_hash import hash_strings


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % (1 << 64)
    return h


def test_hashes_match_the_reference_including_offsets_and_non_ascii() -> None:
    values = ["", "a", "free shipping", "東京の夜景", "x" * 1000]
    arr = pa.array(["skip-me", *values]).slice(1)  # a non-zero array offset
    assert hash_strings(arr).tolist() == [_fnv1a(v.encode()) for v in values]


def test_large_strings_and_empty_arrays() -> None:
    assert hash_strings(pa.array(["ab"], pa.large_string())).tolist() == [_fnv1a(b"ab")]
    assert hash_strings(pa.array([], pa.string())).size == 0


def test_ascii_word_hash_equals_hashing_the_unicode_normalisation() -> None:
    """The one-pass ASCII path gives the hash of audit.caption_duplicates.normalized_captions."""
    from audit.caption_duplicates import normalized_captions
    from audit.kernels.text_hash import hash_words_ascii

    texts = ["  Free   Shipping!! ", "!!!", "", "a", "A--b", "x_y", "Tab\tnew\nline", "\x00nul"]
    texts += ["IMG_0123.JPG", "Über café", "ＦＲＥＥ"]
    arr = pa.array(texts)
    hashes, length = hash_words_ascii(arr)
    ref = normalized_captions(arr)
    ascii_rows = [i for i, t in enumerate(texts) if t.isascii()]
    assert [i for i in range(len(texts)) if length[i] >= 0] == ascii_rows  # the others: Unicode path
    for i in ascii_rows:
        assert hashes[i] == _fnv1a(ref[i].as_py().encode()) and length[i] == len(ref[i].as_py())
