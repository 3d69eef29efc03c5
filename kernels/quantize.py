"""Block-wise int8 embeddings (Dettmers et al., "8-bit Optimizers via Block-wise Quantization").

Each row of an (N, D) float matrix is cut into D / block_size blocks along the feature dimension;
each block keeps its own absmax scale, ``scale = max|x| / 127``, and codes
``q = floor(x / scale + 0.5)`` clipped to [-127, 127] (symmetric, -128 unused). A dequantized row
is ``q * scale`` per block. The L2 norm of every dequantized row is kept beside the codes, so cosine
kernels divide by it instead of re-reading the codes (it is recomputed, not stored, on disk).

Choice of the default block size, measured with ``python -m audit.kernels.bench --sweep`` on
200,000 CLIP-like unit vectors (``audit.kernels.synthetic``: anisotropic, modality means, a few
outlier dimensions ~10x the typical magnitude) forming image-text pairs with cosines 0.1..0.5.
Errors are |cos_int8 - cos_fp32| at the 99.9th percentile, for paired cosine and for scores
against 64 unit concepts; top-5 overlap is against float32's top 5; bytes are codes + float32
scales per row relative to float32 (in memory the row norm adds 4 bytes: 0.268x at D=512):

    D    code     block   bytes   paired p99.9   concept p99.9   top-5 overlap
    512  linear      16   0.312       0.00102         0.00072          0.995
    512  linear      32   0.281       0.00130         0.00090          0.994
    512  linear      64   0.266       0.00159         0.00108          0.993   <- default
    512  linear     128   0.258       0.00192         0.00132          0.992
    512  linear     256   0.254       0.00230         0.00159          0.990
    512  linear     512   0.252       0.00259         0.00186          0.989   (one scale a row)
    512  dynamic     64   0.266       0.00243         0.00184          0.989
    768  linear      32   0.281       0.00107         0.00079          0.994
    768  linear      64   0.266       0.00135         0.00098          0.993   <- default
    768  linear     128   0.258       0.00165         0.00121          0.991
    768  linear     768   0.251       0.00251         0.00194          0.987   (one scale a row)
    768  dynamic     64   0.266       0.00288         0.00187          0.990

64 keeps the paired error near half of the 0.003 budget at ~0.27x the bytes of float32; 128
and up leave little margin for real data with stronger outliers; 32 buys ~20% less error for
6% more bytes. float16 scales measured the same error as float32 (within 1e-5) but are not used:
float32 scales keep the in-memory and on-disk forms identical. Dettmers' dynamic (tree) code,
also with an absmax scale per block, is worse here (0.00243 vs 0.00159 at D=512): normalised
embeddings are not heavy-tailed inside a block the way optimizer states are, and a code-book
lookup would also rule out the exact integer dot products the kernels use. So: linear codes.

Block sizes must be powers of two >= 16 (Triton tiles and ``tl.dot``) and divide D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BLOCK_SIZE = 64
CODE_MAX = 127  # symmetric codes: -128 is never produced, so negation and products stay exact


def is_torch(x: object) -> bool:
    """True for a torch tensor, without importing torch (the CPU path never needs it)."""
    return type(x).__module__.startswith("torch")


def check_block_size(dim: int, block_size: int) -> int:
    """Number of blocks per row; ValueError when ``block_size`` cannot tile ``dim``."""
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    if dim % block_size:
        raise ValueError(f"block_size {block_size} does not divide the embedding dimension {dim}")
    return dim // block_size


@dataclass(frozen=True, eq=False)
class QuantizedEmbeddings:
    """Block-wise int8 embeddings: NumPy arrays on the CPU, torch tensors on a GPU.

    codes (N, D) int8, scales (N, D // block_size) float32, norms (N,) float32 = L2 norm of each
    dequantized row.
    """

    codes: Any
    scales: Any
    norms: Any
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        n, d = self.codes.shape
        nb = check_block_size(d, self.block_size)
        if tuple(self.scales.shape) != (n, nb) or tuple(self.norms.shape) != (n,):
            raise ValueError(
                f"codes {tuple(self.codes.shape)} need scales ({n}, {nb}) and norms ({n},), "
                f"got {tuple(self.scales.shape)} and {tuple(self.norms.shape)}"
            )
        for name, want in (("codes", "int8"), ("scales", "float32"), ("norms", "float32")):
            got = str(getattr(self, name).dtype).removeprefix("torch.")
            if got != want:
                raise ValueError(f"{name} must be {want}, got {got}")

    @property
    def num_rows(self) -> int:
        return int(self.codes.shape[0])

    @property
    def dim(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: codes + scales + norms."""
        return sum(int(a.numel() * a.element_size()) if is_torch(a) else int(a.nbytes) for a in self.arrays)

    @property
    def arrays(self) -> tuple[Any, Any, Any]:
        return self.codes, self.scales, self.norms

    def __len__(self) -> int:
        return self.num_rows


@dataclass(frozen=True, eq=False)
class ConceptScores:
    """Concept scoring output: cosines, a threshold mask and the top-k per row.

    scores (N, K) float32; mask (N, K) bool = scores >= threshold; top_values (N, k) float32 in
    descending order and top_indices (N, k) int32 (ties: the lower concept index first).
    """

    scores: Any
    mask: Any
    top_values: Any
    top_indices: Any


def as_float32_matrix(x: Any, what: str) -> np.ndarray:
    """A C-contiguous float32 (N, D) NumPy array from an array-like or a (CPU) tensor."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (rows, dim) matrix, got shape {arr.shape}")
    return arr


def thresholds_for(threshold: float | Any, num_concepts: int) -> np.ndarray:
    """A (K,) float32 threshold per concept from a scalar or a length-K sequence."""
    thr = np.asarray(threshold.cpu() if is_torch(threshold) else threshold, dtype=np.float32)
    try:
        return np.broadcast_to(thr, (num_concepts,)).copy()  # writable and contiguous
    except ValueError:
        raise ValueError(
            f"threshold must be a scalar or have one value per concept ({num_concepts})"
        ) from None


def check_top_k(k: int, num_concepts: int) -> int:
    if not 0 <= k <= num_concepts:
        raise ValueError(f"top-k must be in 0..{num_concepts} (the number of concepts), got {k}")
    return int(k)
