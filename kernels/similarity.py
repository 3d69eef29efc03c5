"""Float32 reference kernels for CLIP similarities (CPU, NumPy)."""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def paired_cosine_cpu(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a[i], b[i]) for every row i; inputs need not be normalised."""
    if a.shape != b.shape:
        raise ValueError(f"paired cosine needs equal shapes, got {a.shape} and {b.shape}")
    return np.einsum("ij,ij->i", l2_normalize(a), l2_normalize(b)).astype(np.float32)
