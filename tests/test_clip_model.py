from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from audit.clip_model import file_sha256, load_clip
from audit.config import ClipSettings
from audit.errors import ModelLoadError


def test_local_dir_checkpoint_loads_with_its_checksum(tiny_clip_dir: Path) -> None:
    clip = load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), "cpu")
    assert clip.meaningful and clip.record.weights == "file"
    assert clip.record.sha256 == file_sha256(tiny_clip_dir / "open_clip_pytorch_model.bin")
    emb = clip.encode_texts(["a dog", "a cat"])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_unreachable_pretrained_tag_fails_fast_without_permission_for_random() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match="allow_random_weights"):
        load_clip(ClipSettings(model="ViT-B-32", pretrained="laion2b_s34b_b79k"), "cpu", offline=True)
    assert time.perf_counter() - t0 < 30  # offline mode: no minute of hub retries


def test_random_weights_only_when_allowed_and_then_recorded_as_random() -> None:
    settings = ClipSettings(model="ViT-B-32", pretrained=None, allow_random_weights=True, seed=3)
    a = load_clip(settings, "cpu")
    b = load_clip(settings, "cpu")
    assert not a.meaningful and a.record.weights == "random" and "seed 3" in a.record.source
    # every worker must build the same random model, or embeddings would not be comparable
    np.testing.assert_array_equal(a.encode_texts(["x"]), b.encode_texts(["x"]))


def test_unknown_model_name_is_a_one_line_error() -> None:
    with pytest.raises(ModelLoadError, match="ViT-Nope"):
        load_clip(ClipSettings(model="ViT-Nope", pretrained=None, allow_random_weights=True), "cpu")


def test_missing_checkpoint_in_local_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no open_clip_model"):
        load_clip(ClipSettings(model=f"local-dir:{tmp_path}", pretrained=None), "cpu")
