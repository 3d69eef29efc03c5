from __future__ import annotations

import pytest

from audit.errors import ConfigError
from audit.neighbours.spec import IndexConfig, choose_index_spec, default_nlist

GIB = 2**30


def test_small_corpus_gets_exact_flat() -> None:
    spec = choose_index_spec(10_000, 512)
    assert (spec.kind, spec.factory, spec.train_size) == ("flat", "IDMap,Flat", 0)


def test_million_rows_get_ivf_sq8_inside_the_budget() -> None:
    spec = choose_index_spec(1_000_000, 512, IndexConfig(memory_budget_bytes=4 * GIB))
    assert (spec.kind, spec.factory) == ("ivf_sq8", "IVF1024,SQ8")
    assert spec.memory_bytes(1_000_000) <= 4 * GIB
    assert 39 * spec.nlist <= spec.train_size <= 1_000_000


def test_a_flat_sized_corpus_over_budget_goes_to_ivf() -> None:
    rows, dim = 20_000, 512  # flat would need ~41 MB
    assert choose_index_spec(rows, dim, IndexConfig(memory_budget_bytes=40 * 2**20)).kind == "flat"
    assert choose_index_spec(rows, dim, IndexConfig(memory_budget_bytes=30 * 2**20)).kind == "ivf_sq8"


def test_tight_budget_falls_back_to_the_largest_pq_that_fits() -> None:
    rows, dim = 1_000_000, 512
    roomy = choose_index_spec(rows, dim, IndexConfig(memory_budget_bytes=200 * 2**20))
    tight = choose_index_spec(rows, dim, IndexConfig(memory_budget_bytes=60 * 2**20))
    assert (roomy.kind, roomy.pq_m) == ("ivf_pq", 64)  # 96 bytes does not divide 512 dimensions
    assert (tight.kind, tight.pq_m) == ("ivf_pq", 32)
    assert tight.memory_bytes(rows) <= 60 * 2**20 < choose_index_spec(rows, dim).memory_bytes(rows)
    assert tight.train_size >= 256 * 39


def test_budget_too_small_is_one_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"memory_budget_bytes.*IVF1024,PQ8"):
        choose_index_spec(1_000_000, 512, IndexConfig(memory_budget_bytes=2**20))


def test_nlist_grows_with_the_corpus_and_leaves_rows_to_train_each_list() -> None:
    sizes = [100, 10_000, 1_000_000, 100_000_000, 10_000_000_000]
    nlists = [default_nlist(n) for n in sizes]
    assert nlists == sorted(nlists) and nlists[2] == 1024 and nlists[-1] == 65_536
    assert all(39 * nl <= n for nl, n in zip(nlists, sizes, strict=True))


def test_configured_nlist_and_nprobe_are_kept() -> None:
    spec = choose_index_spec(500_000, 256, IndexConfig(flat_max_rows=0, nlist=300, nprobe=16))
    assert (spec.nlist, spec.nprobe, spec.factory) == (300, 16, "IVF300,SQ8")
