from __future__ import annotations

import pyarrow as pa
import pytest

from audit.stages.similarity_analysis import analyse_similarity


def test_thresholds_and_delta_follow_nulls() -> None:
    table = pa.table(
        {
            "clip_similarity": pa.array([0.25, 0.29, 0.31, None], pa.float32()),
            "source_similarity": pa.array([0.30, None, 0.33, 0.4], pa.float32()),
        }
    )
    out = analyse_similarity(table)
    assert out.num_rows == 4
    assert out.column("clip_below_028").to_pylist() == [True, False, False, None]
    assert out.column("clip_below_030").to_pylist() == [True, True, False, None]
    delta = out.column("clip_similarity_delta").to_pylist()
    assert delta[0] == pytest.approx(-0.05, abs=1e-6) and delta[1] is None and delta[3] is None
