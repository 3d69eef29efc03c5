from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from audit.errors import ConfigError, InputFileError
from audit.neighbours.device import faiss_gpu_available, resolve_faiss_device
from audit.neighbours.duplicates import find_near_duplicates
from audit.neighbours.ids import RowTable, index_ids, split_index_ids
from audit.neighbours.index import NeighbourIndex, normalised, range_search_by_knn
from audit.neighbours.spec import IndexConfig, choose_index_spec

N_ROWS, DIM = 12_000, 64  # the planted corpus of conftest.py


def test_save_load_round_trip_gives_the_same_results(
    any_index: NeighbourIndex, vectors, tmp_path: Path
) -> None:
    queries = vectors[::97]
    before = any_index.search(queries, 10)
    any_index.save(str(tmp_path / "index"))
    for mmap in (False, True):
        loaded = NeighbourIndex.load(str(tmp_path / "index"), device="cpu", mmap=mmap)
        after = loaded.search(queries, 10)
        np.testing.assert_array_equal(after.ids, before.ids)
        np.testing.assert_array_equal(after.similarities, before.similarities)
        assert loaded.spec == any_index.spec and loaded.ntotal == N_ROWS


def test_index_folder_round_trips_through_an_fsspec_url(flat_index: NeighbourIndex, vectors) -> None:
    url = "memory://runs/neighbours-test/index"
    flat_index.save(url)
    loaded = NeighbourIndex.load(url, device="cpu")
    np.testing.assert_array_equal(loaded.search(vectors[:20], 5).ids, flat_index.search(vectors[:20], 5).ids)


def test_index_json_describes_what_was_built(ivf_index: NeighbourIndex, tmp_path: Path) -> None:
    ivf_index.save(str(tmp_path / "index"))
    meta = json.loads((tmp_path / "index" / "index.json").read_text())
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["index.faiss", "index.json"]
    assert meta["factory"] == f"IVF{ivf_index.spec.nlist},SQ8" and meta["kind"] == "ivf_sq8"
    assert (meta["dim"], meta["metric"], meta["n"]) == (DIM, "cosine", N_ROWS)
    assert meta["trained_on"] == ivf_index.spec.train_size > 0
    assert meta["faiss_version"] == faiss.__version__


def test_a_half_written_index_folder_fails_with_one_clear_line(
    flat_index: NeighbourIndex, tmp_path: Path
) -> None:
    folder = tmp_path / "index"
    flat_index.save(str(folder))
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "n": meta["n"] - 1}))
    with pytest.raises(InputFileError, match="rebuild the index"):
        NeighbourIndex.load(str(folder), device="cpu")
    (folder / "index.json").unlink()
    with pytest.raises(InputFileError, match="not a neighbour index folder"):
        NeighbourIndex.load(str(folder), device="cpu")


def test_ivf_finds_what_flat_finds_on_the_planted_set(
    flat_index, ivf_index, vectors, ids, min_similarity
) -> None:
    queries = vectors[::17]
    exact, approx = flat_index.search(queries, 10), ivf_index.search(queries, 10, nprobe=8)
    recall_at_10 = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact.ids, approx.ids, strict=True)])
    assert recall_at_10 >= 0.9

    def pair_set(index: NeighbourIndex) -> set[tuple[int, int]]:
        p = find_near_duplicates(index, vectors, ids, min_similarity=min_similarity, k=8)
        return set(zip(p.a.tolist(), p.b.tolist(), strict=True))

    flat_pairs, ivf_pairs = pair_set(flat_index), pair_set(ivf_index)
    assert len(flat_pairs) >= 40  # every planted group gives at least one pair
    assert len(flat_pairs & ivf_pairs) / len(flat_pairs) >= 0.95


@pytest.mark.slow  # PQ codebook training: ~1.5 s on one idle core, more on a busy 2-core machine
def test_pq_index_under_a_tight_budget_still_finds_copies(build_index, corpus, vectors, ids) -> None:
    index = build_index(IndexConfig(flat_max_rows=0, memory_budget_bytes=300_000))
    assert (index.spec.kind, index.spec.pq_m) == ("ivf_pq", 8)  # 8 bytes a row instead of 64 for SQ8
    first_copies = np.array([g[0] for g in corpus.groups])
    nb = index.search(vectors[first_copies], 3)
    partners = [set(ids[g[1:]].tolist()) for g in corpus.groups]
    hits = [bool(p & set(found.tolist())) for p, found in zip(partners, nb.ids, strict=True)]
    assert np.mean(hits) >= 0.9


def test_range_search_returns_exactly_the_items_above_the_threshold(flat_index, vectors, ids) -> None:
    queries = vectors[:50]
    found = flat_index.range_search(queries, 0.6)
    sims = normalised(queries, DIM) @ normalised(vectors, DIM).T
    assert found.lims[-1] > 100
    for q in range(len(queries)):
        got = set(found.ids[found.lims[q] : found.lims[q + 1]].tolist())
        borderline = set(ids[np.abs(sims[q] - 0.6) < 1e-5].tolist())  # float rounding may go either way
        assert got - borderline == set(ids[sims[q] >= 0.6].tolist()) - borderline
        assert np.all(np.diff(found.similarities[found.lims[q] : found.lims[q + 1]]) <= 0)


def test_knn_doubling_range_search_matches_native_range_search(ivf_index, vectors) -> None:
    """The GPU's range search (kNN with a growing k), checked against the CPU's own range search."""
    queries = normalised(vectors[::50], DIM)
    native = ivf_index.range_search(queries, 0.55)
    doubled = range_search_by_knn(lambda q, k: ivf_index._search(q, k, None), queries, 0.55, start_k=4)
    assert native.lims[-1] > 4 * len(queries)  # some queries need several doublings

    def per_query(found) -> list[set[int]]:
        # The two paths may round a sim differently in the last bit: leave out items at the threshold.
        clear = np.abs(found.similarities - 0.55) > 1e-5
        return [
            set(
                found.ids[found.lims[q] : found.lims[q + 1]][
                    clear[found.lims[q] : found.lims[q + 1]]
                ].tolist()
            )
            for q in range(len(found.lims) - 1)
        ]

    assert per_query(doubled) == per_query(native)


def test_knn_doubling_range_search_stops_at_max_k_and_says_so(flat_index, vectors, caplog) -> None:
    queries = normalised(vectors[:5], DIM)
    with caplog.at_level(logging.WARNING):
        found = range_search_by_knn(lambda q, k: flat_index._search(q, k, None), queries, -1.0, max_k=32)
    assert np.all(np.diff(found.lims) == 32)
    assert "stopped at 32 results for 5 queries" in caplog.text


def test_bad_inputs_are_refused_before_faiss_sees_them(corpus) -> None:
    index = NeighbourIndex.create(choose_index_spec(N_ROWS, DIM, IndexConfig(flat_max_rows=0)), device="cpu")
    x = corpus.block(0)[0]
    with pytest.raises(ValueError, match="train"):
        index.add(x, np.arange(len(x)))
    index.train(corpus.sample(index.spec.train_size))
    with pytest.raises(ValueError, match=r"shape \(n, 64\)"):
        index.add(x[:, :32], np.arange(len(x)))
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="1 of 2000 vectors hold NaN"):
        index.add(bad, np.arange(len(x)))
    with pytest.raises(ValueError, match="ids of shape"):
        index.add(x, np.arange(5))


def test_vectors_are_normalised_without_touching_the_callers_array(flat_index, vectors) -> None:
    scaled = vectors[:20] * 7.0
    copy = scaled.copy()
    nb = flat_index.search(scaled, 1)
    np.testing.assert_array_equal(scaled, copy)
    np.testing.assert_allclose(nb.similarities[:, 0], 1.0, atol=1e-5)


def test_index_ids_encode_shard_and_position() -> None:
    ids = index_ids(7, 3, start=2**32 - 3)
    shard, position = split_index_ids(ids)
    assert shard.tolist() == [7, 7, 7] and position.tolist() == [2**32 - 3, 2**32 - 2, 2**32 - 1]
    with pytest.raises(ValueError):
        index_ids(1, 2, start=2**32 - 1)


def test_row_table_maps_ids_back_to_row_ids_and_keys_and_refuses_unknown_ids() -> None:
    # two shards numbering their keys alike: the same key, two rows
    table = RowTable(np.array([30, 10, 20]), ["b:0", "a:0", "a:1"], ["000000000", "000000000", "000000001"])
    got = table(np.array([20, 30, 10, 20]))
    assert got.column("row_id").to_pylist() == ["a:1", "b:0", "a:0", "a:1"]
    assert got.column("key").to_pylist() == ["000000001", "000000000", "000000000", "000000001"]
    with pytest.raises(KeyError, match=r"1 index ids have no row, e\.g\. 15"):
        table(np.array([10, 15]))
    with pytest.raises(ValueError, match="unique"):
        RowTable(np.array([1, 1]), ["a:0", "a:1"], ["k", "k"])


@pytest.mark.skipif(faiss_gpu_available(), reason="faiss sees a GPU here")
def test_without_faiss_gpu_auto_is_cpu_and_cuda_is_a_config_error() -> None:
    assert resolve_faiss_device("auto") == "cpu"
    assert type(NeighbourIndex.create(choose_index_spec(10, 4))) is NeighbourIndex
    with pytest.raises(ConfigError, match="cuda was asked for"):
        resolve_faiss_device("cuda")
    with pytest.raises(ConfigError, match="unknown value 'tpu'"):
        resolve_faiss_device("tpu")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["flat", "ivf_sq8"])
def test_gpu_index_matches_cpu_and_saves_a_cpu_readable_index(
    kind, build_index, corpus, vectors, ids, tmp_path
):
    if not faiss_gpu_available():
        pytest.skip("faiss-gpu is not installed")
    cfg = IndexConfig(flat_max_rows=N_ROWS if kind == "flat" else 0, device="cuda")
    cpu = build_index(IndexConfig(flat_max_rows=cfg.flat_max_rows))
    gpu = NeighbourIndex.create(cpu.spec, device="cuda")
    assert gpu.device == "cuda"
    gpu.train(corpus.sample(max(cpu.spec.train_size, 1)))
    gpu.add(vectors, ids)
    q = vectors[::40]
    a, b = cpu.search(q, 10, nprobe=8), gpu.search(q, 10, nprobe=8)
    assert np.mean(a.ids == b.ids) >= 0.9
    found = gpu.range_search(q, 0.6)
    assert found.lims[-1] > 0 and np.all(found.similarities >= 0.6)
    gpu.save(str(tmp_path / "index"))
    assert NeighbourIndex.load(str(tmp_path / "index"), device="cpu").ntotal == N_ROWS
