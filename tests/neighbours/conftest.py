"""A small planted corpus split into three shards, with flat and IVF-SQ8 indexes built the way the
pipeline builds them: sample -> train -> add shard by shard."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from audit.neighbours.ids import RowTable, index_ids
from audit.neighbours.index import NeighbourIndex
from audit.neighbours.planted import PlantedCorpus
from audit.neighbours.spec import IndexConfig, choose_index_spec

N_ROWS, DIM, SHARD_ROWS = 12_000, 64, 4_000


@pytest.fixture(scope="session")
def min_similarity() -> float:
    """Planted copies meet at cosine >= ~0.953 in 64 dimensions; unrelated rows stay below ~0.85."""
    return 0.9


@pytest.fixture(scope="session")
def corpus() -> PlantedCorpus:
    return PlantedCorpus(N_ROWS, DIM, n_clusters=12, n_dup_groups=40, n_outliers=15, block_rows=2_000, seed=3)


@pytest.fixture(scope="session")
def vectors(corpus: PlantedCorpus) -> np.ndarray:
    return corpus.vectors()


@pytest.fixture(scope="session")
def ids() -> np.ndarray:
    """Index ids as the pipeline makes them: shard_index << 32 | position."""
    return np.concatenate([index_ids(s, SHARD_ROWS) for s in range(N_ROWS // SHARD_ROWS)])


@pytest.fixture(scope="session")
def rows(ids: np.ndarray) -> RowTable:
    """Row ids shard<i>:<row>; keys numbered per shard as img2dataset does, so every key repeats
    in all three shards."""
    listed = ids.tolist()
    return RowTable(ids, [f"shard{i >> 32}:{i & 0xFFFFFFFF}" for i in listed],
                    [f"{i & 0xFFFFFFFF:09d}" for i in listed])  # fmt: skip


def _build(corpus: PlantedCorpus, vectors: np.ndarray, ids: np.ndarray, cfg: IndexConfig) -> NeighbourIndex:
    index = NeighbourIndex.create(choose_index_spec(N_ROWS, DIM, cfg), device="cpu")
    index.train(corpus.sample(max(index.spec.train_size, 1)))
    for start in range(0, N_ROWS, SHARD_ROWS):
        index.add(vectors[start : start + SHARD_ROWS], ids[start : start + SHARD_ROWS])
    return index


@pytest.fixture(scope="session")
def build_index(
    corpus: PlantedCorpus, vectors: np.ndarray, ids: np.ndarray
) -> Callable[[IndexConfig], NeighbourIndex]:
    return lambda cfg: _build(corpus, vectors, ids, cfg)


@pytest.fixture(scope="session")
def flat_index(build_index: Callable[[IndexConfig], NeighbourIndex]) -> NeighbourIndex:
    return build_index(IndexConfig())


@pytest.fixture(scope="session")
def ivf_index(build_index: Callable[[IndexConfig], NeighbourIndex]) -> NeighbourIndex:
    return build_index(IndexConfig(flat_max_rows=0, nprobe=4))


@pytest.fixture(scope="session", params=["flat", "ivf_sq8"])
def any_index(request: pytest.FixtureRequest) -> NeighbourIndex:
    return request.getfixturevalue("flat_index" if request.param == "flat" else "ivf_index")
