"""Detoxify through its real checkpoint format, with a tiny BERT built here (random weights)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.config import DetoxifySettings
from audit.detoxify_scorer import DetoxifyScorer
from audit.errors import ModelLoadError
from audit.local_models import build_detoxify_checkpoint


@pytest.fixture(scope="module")
def tiny_detoxify(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    tiny = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64}  # fmt: skip
    words = ["a", "the", "dog", "you", "are", "an", "idiot", "nice", "photo", "of"]
    return build_detoxify_checkpoint(tmp_path_factory.mktemp("detoxify"), words, tiny)


def test_local_checkpoint_loads_offline_with_its_own_weights(tiny_detoxify) -> None:
    ckpt, hf, reference = tiny_detoxify
    scorer = DetoxifyScorer(
        DetoxifySettings(checkpoint=str(ckpt), huggingface_config_path=str(hf), batch_size=2)
    )
    texts = ["you are an idiot", "a nice photo of a dog", "x" * 5000]
    out = scorer.score(texts)
    tokens = scorer.tokenizer(texts, return_tensors="pt", truncation=True, padding=True, max_length=512)
    with torch.no_grad():
        expected = torch.sigmoid(reference(**tokens)[0]).numpy()
    np.testing.assert_allclose(out["detoxify_toxicity"], expected[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["detoxify_identity_attack"], expected[:, 5], atol=1e-5)
    assert np.isnan(out["detoxify_sexual_explicit"]).all()  # a class this model does not have
    assert scorer.record.weights == "file" and len(scorer.record.sha256) == 64


def test_released_model_name_without_cache_fails_with_the_offline_way_out(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    with pytest.raises(ModelLoadError, match="checkpoint and huggingface_config_path"):
        DetoxifyScorer(DetoxifySettings(model_type="original"))


def test_a_file_that_is_not_a_detoxify_checkpoint_is_rejected(tmp_path: Path) -> None:
    torch.save({"weights": 1}, tmp_path / "x.ckpt")
    with pytest.raises(ModelLoadError, match="not a Detoxify checkpoint"):
        DetoxifyScorer(DetoxifySettings(checkpoint=str(tmp_path / "x.ckpt")))


def test_long_captions_give_detoxify_the_tokens_of_the_whole_caption(tiny_detoxify) -> None:
    """The tokenizer sees a bounded prefix of a long caption, and the model gets the same tokens."""
    ckpt, hf, _ = tiny_detoxify
    scorer = DetoxifyScorer(DetoxifySettings(checkpoint=str(ckpt), huggingface_config_path=str(hf)))
    captions = ["a " * 50_000 + "idiot", "you are an idiot " * 2000, " " * 9000 + "idiot", "nice photo"]
    for caption in captions:
        prefix = scorer._readable_prefix(caption)
        assert caption.startswith(prefix) and (len(caption) < 5000 or len(prefix) < 20_000)
        whole = scorer.tokenizer([caption], truncation=True, max_length=512)["input_ids"]
        assert scorer.tokenizer([prefix], truncation=True, max_length=512)["input_ids"] == whole


def test_detoxify_tokenizing_is_linear_in_the_caption(tiny_detoxify) -> None:
    """'a ' * n was super-linear in BERT's tokenizer: the time per doubling stays near 2x."""
    import time

    ckpt, hf, _ = tiny_detoxify
    scorer = DetoxifyScorer(DetoxifySettings(checkpoint=str(ckpt), huggingface_config_path=str(hf)))

    def best(n: int) -> float:
        t = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            scorer._readable_prefix("a " * n)
            t = min(t, time.perf_counter() - start)
        return t

    times = [best(32_000 << k) for k in range(4)]
    ratios = sorted(b / a for a, b in itertools.pairwise(times))
    assert ratios[1] < 3.0, times  # bounded: the prefix, not the caption, is tokenized
