"""CLIP-like embedding pairs for kernel tests, error measurements and the benchmark.

Random isotropic Gaussians flatter int8 quantization: real CLIP embeddings are anisotropic,
carry a per-modality mean direction (the "modality gap") and a few outlier dimensions whose
magnitude is many times the typical one, and those outliers set a block's absmax scale. The
generator reproduces those three features so measured errors transfer to real data:

- per-dimension standard deviations drawn log-normally (spread ~1.4x either way);
- a shared mean direction per modality with ~0.45 mean cosine between two images;
- ``outlier_dims`` dimensions whose mean value is 6-12x the typical magnitude;
- image-text pairs with cosines uniform on ``cos_range`` (default 0.1..0.5, as for
  CLIP image-text pairs in LAION): text = normalize(t·image + sqrt(1 − t²)·(text sample ⟂ image)).
"""

from __future__ import annotations

import numpy as np

_CHUNK_ROWS = 65_536  # bounds the temporaries; the data depend on it, so it is fixed


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class ClipLikeSpace:
    """A fixed embedding space (means, scales, outliers) from which rows are drawn."""

    def __init__(self, dim: int, *, seed: int = 0, outlier_dims: int = 4, mean_weight: float = 0.9) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.sigma = np.exp(rng.normal(0.0, 0.35, dim)).astype(np.float32)
        self.sigma /= np.sqrt(np.sum(self.sigma**2))  # the random part has norm ~1
        self.outliers = rng.choice(dim, size=outlier_dims, replace=False)
        means = []
        for _ in range(2):  # image mean, text mean
            mu = rng.normal(0.0, 1.0, dim).astype(np.float32) / np.sqrt(dim)
            mu[self.outliers] = (
                rng.choice([-1.0, 1.0], outlier_dims) * rng.uniform(6, 12, outlier_dims) / np.sqrt(dim)
            )
            means.append(mean_weight * mu / np.linalg.norm(mu))
        self.image_mean, self.text_mean = means

    def sample(self, n: int, modality: str, rng: np.random.Generator) -> np.ndarray:
        mean = self.image_mean if modality == "image" else self.text_mean
        z = rng.standard_normal((n, self.dim), dtype=np.float32) * self.sigma
        return _unit(z + mean)


def clip_like_pairs(
    n: int,
    dim: int,
    *,
    seed: int = 0,
    cos_range: tuple[float, float] = (0.1, 0.5),
) -> tuple[np.ndarray, np.ndarray]:
    """(images, texts): unit-norm float32 (n, dim) arrays, row i of each forming a pair.

    Built in chunks so that 1M x 768 needs little more than the two outputs in memory.
    """
    space = ClipLikeSpace(dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    images = np.empty((n, dim), np.float32)
    texts = np.empty((n, dim), np.float32)
    for i0 in range(0, n, _CHUNK_ROWS):
        m = min(_CHUNK_ROWS, n - i0)
        img = space.sample(m, "image", rng)
        txt = space.sample(m, "text", rng)
        t = rng.uniform(*cos_range, size=(m, 1)).astype(np.float32)
        perp = _unit(txt - np.sum(txt * img, axis=1, keepdims=True) * img)
        images[i0 : i0 + m] = img
        texts[i0 : i0 + m] = _unit(t * img + np.sqrt(1.0 - t**2) * perp)
    return images, texts


def clip_like_concepts(k: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """k text-like unit concept vectors (prompt embeddings) in the same space as ``clip_like_pairs``."""
    space = ClipLikeSpace(dim, seed=seed)
    return space.sample(k, "text", np.random.default_rng(seed + 2))
