"""finalize's merged flags.parquet: most severe first, then shard, then row, whether the shards'
flag parts are merged in memory (a run's flags up to a bound) or streamed one severity at a time."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.finalize import _write_flags
from audit.runfolder import RunFolder
from audit.schemas import FLAGS_SCHEMA, SEVERITIES


def _flags(shard_id: str, rows: list[tuple[int, int]]) -> pa.Table:
    """A shard's flag part: (row_index, severity_rank) per flagged row, in row order."""
    n = len(rows)
    cols: dict[str, list] = {name: [None] * n for name in FLAGS_SCHEMA.names}
    cols.update(
        row_id=[f"{shard_id}:{i}" for i, _ in rows],
        key=["000000000"] * n,  # the same key in every shard: order never rests on it
        shard_id=[shard_id] * n,
        row_index=[i for i, _ in rows],
        reasons=[[f"reason-{r}", "shared"] for _, r in rows],
        rules=[[f"rule-{r}"] for _, r in rows],
        severity=[SEVERITIES[r] for _, r in rows],
        severity_rank=[r for _, r in rows],
        scores=[[("text_toxicity", i / 7)] for i, _ in rows],
        thresholds=[[(f"rule-{r}:text_toxicity", 0.5)] for _, r in rows],
        clip_meaningful=[False] * n,
        render_blocked=[r == len(SEVERITIES) - 1 for _, r in rows],
    )
    return pa.table(cols, schema=FLAGS_SCHEMA)


@pytest.fixture
def run(tmp_path) -> tuple[RunFolder, list[str], list[tuple[int, str, int]]]:
    rng = random.Random(7)
    run = RunFolder(str(tmp_path / "run"))
    shard_ids = ["s-b", "s-a", "s-c", "s-empty"]  # not in sorted order
    expected = []
    for s in shard_ids:
        rows = [] if s == "s-empty" else sorted(rng.sample(range(10_000), 300))
        ranked = [(i, rng.randrange(len(SEVERITIES))) for i in rows]
        run.write_parquet(run.part("flags", s), _flags(s, ranked))
        expected += [(-r, s, i) for i, r in ranked]
    return run, shard_ids, sorted(expected)


@pytest.mark.parametrize("in_memory_rows", [0, 10**6], ids=["streamed", "in-memory"])
def test_flags_are_merged_most_severe_first_then_by_shard_and_row(run, in_memory_rows: int) -> None:
    folder, shard_ids, expected = run
    rows, by_reason, by_severity = _write_flags(folder, shard_ids, in_memory_rows=in_memory_rows)
    merged = pq.read_table(folder.flags)
    assert merged.schema.equals(FLAGS_SCHEMA)
    got = [
        (-r, s, i)
        for r, s, i in zip(
            *(merged[c].to_pylist() for c in ("severity_rank", "shard_id", "row_index")), strict=True
        )
    ]
    assert got == expected and rows == len(expected) == 900
    assert by_reason["shared"] == 900
    assert sum(by_severity.values()) == 900
    assert {k: v for k, v in by_reason.items() if k != "shared"} == {
        f"reason-{-r}": sum(1 for e in expected if e[0] == r) for r in {e[0] for e in expected}
    }
    assert merged["row_id"].to_pylist() == [f"{s}:{i}" for _, s, i in expected]


def test_both_merges_write_the_same_file(run) -> None:
    folder, shard_ids, _ = run
    _write_flags(folder, shard_ids, in_memory_rows=0)
    streamed = pq.read_table(folder.flags)
    _write_flags(folder, shard_ids, in_memory_rows=10**6)
    assert pq.read_table(folder.flags).equals(streamed)


def test_a_bound_that_the_flags_pass_midway_still_merges_in_order(run) -> None:
    folder, shard_ids, expected = run
    rows, _, _ = _write_flags(folder, shard_ids, in_memory_rows=400)  # passed by the second part
    got = pq.read_table(folder.flags, columns=["row_id"])["row_id"].to_pylist()
    assert rows == 900 and got == [f"{s}:{i}" for _, s, i in expected]
