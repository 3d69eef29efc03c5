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
