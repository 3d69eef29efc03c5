"""Float32 reference kernels for CLIP similarities (CPU, NumPy)."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    # row norms by einsum: no squared temporary the size of x (np.linalg.norm makes one; profiled
    # at a third of the precomputed-embedding similarity stage)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return x / np.maximum(norms, eps)


def paired_cosine_cpu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a[i], b[i]) for every row i; inputs need not be normalised."""
    if a.shape != b.shape:
        raise ValueError(f"paired cosine needs equal shapes, got {a.shape} and {b.shape}")
    return np.einsum("ij,ij->i", l2_normalize(a), l2_normalize(b)).astype(np.float32)
