"""The block-int8 codes of the last few read-only embedding matrices of a batch, so the stages that
quantize the same embeddings (paired CLIP similarity, concept probes, the run folder's embedding
tables) do it once.

A matrix is recognised by its memory (data pointer, shape, strides, dtype) and the block size. Only
read-only arrays are remembered, and each entry holds a reference to its array: the memory can
neither be changed nor freed and reused while the entry lives, so a hit is always the same values.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from audit.kernels.quantize import QuantizedEmbeddings

_SIZE = 4  # both sides of a batch, with room for a caller's own
_memo: OrderedDict[tuple, tuple[np.ndarray, QuantizedEmbeddings]] = OrderedDict()


def _key(x: np.ndarray, block_size: int) -> tuple:
    return (x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str, block_size)


def quantize_once(
    x: np.ndarray, block_size: int, quantize: Callable[..., QuantizedEmbeddings]
) -> QuantizedEmbeddings:
    """``quantize(x, block_size=block_size)``, reused for the same read-only memory."""
    if not isinstance(x, np.ndarray) or x.flags.writeable:
        return quantize(x, block_size=block_size)
    key = _key(x, block_size)
    hit = _memo.get(key)
    if hit is not None:
        _memo.move_to_end(key)
        return hit[1]
    q = quantize(x, block_size=block_size)
    _memo[key] = (x, q)
    while len(_memo) > _SIZE:
        _memo.popitem(last=False)
    return q


def forget() -> None:
    _memo.clear()
