from __future__ import annotations

import numpy as np

from audit.neighbours.outliers import outlier_scores
from audit.neighbours.results import Neighbours


def test_planted_outliers_score_higher_than_every_other_row(any_index, corpus, vectors, ids) -> None:
    scores = outlier_scores(ids, any_index.search(vectors, 6), k=5)
    planted = np.zeros(len(ids), bool)
    planted[corpus.outlier_rows] = True
    assert scores[planted].min() > np.quantile(scores[~planted], 0.999)
    top = np.argsort(-scores)[: planted.sum()]
    assert planted[top].mean() >= 0.9
    assert np.all((scores >= 0) & (scores <= 2))


def test_score_skips_the_query_itself_and_maxes_out_when_too_few_were_found() -> None:
    nb = Neighbours(
        similarities=np.array(
            [[1.0, 0.9, 0.7, 0.5], [0.8, 1.0, 0.6, -1.0], [1.0, 0.4, -1.0, -1.0]], np.float32
        ),
        ids=np.array([[10, 11, 12, 13], [10, 11, 12, -1], [12, 13, -1, -1]]),
    )
    scores = outlier_scores(np.array([10, 11, 12]), nb, k=2)
    np.testing.assert_allclose(scores, [1 - 0.7, 1 - 0.6, 2.0], rtol=1e-6)
