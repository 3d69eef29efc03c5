from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from audit.errors import ModelLoadError
from audit.image_scorers import ClipNsfwScorer, OpenNsfwScorer, build_clip_nsfw_head


def test_open_nsfw_scores_real_photos_as_safe() -> None:
    from skimage import data

    scorer = OpenNsfwScorer()
    photos = [
        Image.fromarray(data.astronaut()),
        Image.fromarray(data.coffee()),
        Image.fromarray(data.chelsea()),
    ]
    scores = scorer.score(photos)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores < 0.5))
    assert scorer.record.weights == "package" and scorer.record.version


def test_clip_nsfw_head_loads_a_user_file_and_scores_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = build_clip_nsfw_head(16, (8, 4))
    with torch.no_grad():
        head[-1].bias.fill_(3.0)  # a head that leans NSFW, so the test can tell it was loaded
    torch.save(head.state_dict(), tmp_path / "head.pt")
    scorer = ClipNsfwScorer(str(tmp_path / "head.pt"), dim=16, hidden=(8, 4))
    scores = scorer.score(np.eye(16, dtype=np.float32)[:5])
    assert scores.shape == (5,) and np.all(scores > 0.9)
    assert scorer.record.sha256 and scorer.record.weights == "file"


def test_clip_nsfw_head_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    torch.save(build_clip_nsfw_head(16, (8,)).state_dict(), tmp_path / "head.pt")
    with pytest.raises(ModelLoadError, match=r"does not fit a 32-d head"):
        ClipNsfwScorer(str(tmp_path / "head.pt"), dim=32, hidden=(8,))
    with pytest.raises(ModelLoadError, match="clip_nsfw_weights is not set"):
        ClipNsfwScorer(None, dim=32, hidden=(8,))
