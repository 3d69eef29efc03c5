"""Kernel fixtures: CLIP-like pairs and concepts, and Triton's CPU interpreter when there is no GPU.

``@triton.jit`` decides between compiling and interpreting when it decorates, and triton's own
library checks TRITON_INTERPRET again at run time, so without CUDA the variable is set here for
the whole session, before anything imports ``audit.kernels.int8_triton``. With CUDA it is left
alone: the kernels compile as in production and the same tests run on the GPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from audit.kernels.synthetic import clip_like_concepts, clip_like_pairs

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

# Enough rows that the 99.9th percentile rests on ~20 rows beyond it.
ERROR_ROWS = 20_000


@pytest.fixture(scope="session", params=[512, 768], ids=lambda d: f"d{d}")
def dim(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(scope="session")
def pairs(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(images, texts) unit float32, paired cosines uniform on 0.1..0.5."""
    return clip_like_pairs(ERROR_ROWS, dim, seed=dim)


@pytest.fixture(scope="session")
def concepts(dim: int) -> np.ndarray:
    return clip_like_concepts(64, dim, seed=dim)
