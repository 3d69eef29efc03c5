"""open_clip models through their real loading paths: pretrained tags, checkpoint files, local dirs.

Random weights are used only when the config allows it, and the model record then says so, so
every output can state that CLIP-based scores are not meaningful.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from audit.config import ClipSettings
from audit.errors import ModelLoadError
from audit.images import DecodedImage, TensorImage
from audit.schemas import ModelRecord

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Make huggingface_hub fail at once instead of retrying an unreachable hub for a minute."""
    if not offline:
        yield
        return
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    old_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _local_dir_weights(folder: Path) -> Path | None:
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class ClipModel:
    model: object  # open_clip CLIP module, eval mode
    preprocess: Callable[[Image.Image], object]
    tokenizer: Callable[[Sequence[str]], object]
    device: str
    record: ModelRecord

    @property
    def meaningful(self) -> bool:
        return self.record.weights != "random"

    @functools.cached_property
    def embed_dim(self) -> int:
        return int(self.encode_texts([""]).shape[1])

    @property
    def architecture(self) -> str:
        """The open_clip model name without a local-dir prefix, for comparing with embedding sources."""
        return self.record.name

    def encode_images(self, images: Sequence[DecodedImage]) -> np.ndarray:
        """Embeddings of PIL images (open_clip's preprocess) and TensorImages (``preprocess_pixels``)."""
        import torch

        if not images:
            return np.zeros((0, 0), np.float32)
        batch = [
            self.preprocess_pixels(im.pixels)
            if isinstance(im, TensorImage)
            else self.preprocess(im).to(self.device)
            for im in images
        ]
        return self._encode_batch(torch.stack(batch))

    def preprocess_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """open_clip's preprocess of one CHW uint8 RGB tensor, run on the model's device: the same
        resize, crop and normalisation as for a PIL image, without going through PIL."""
        steps = self._tensor_steps
        if steps is None:  # a preprocess step only PIL images can take
            hwc = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
            return self.preprocess(Image.fromarray(hwc)).to(self.device)
        x = pixels.to(self.device)
        for step in steps:
            x = step(x)
        return x

    @functools.cached_property
    def _tensor_steps(self) -> list[Callable] | None:
        """The steps of the model's own preprocess (sizes, interpolation, mean and std as it was
        built with) that work on tensors, with ToTensor's scaling to [0, 1] kept; None if a step
        works on PIL images only."""
        from torchvision import transforms as T

        steps: list[Callable] = []
        scaled = False
        for t in getattr(self.preprocess, "transforms", [self.preprocess]):
            name = getattr(t, "__name__", type(t).__name__)
            if isinstance(t, T.ToTensor):  # open_clip's MaybeToTensor included
                steps.append(_to_unit_range)
                scaled = True
            elif isinstance(t, T.Resize | T.CenterCrop | T.Normalize):
                if isinstance(t, T.Normalize) and not scaled:
                    return None  # would see uint8 pixels
                steps.append(t)
            elif name not in ("MaybeConvertMode", "_convert_to_rgb"):  # RGB already: nothing to do
                return None
        return steps if scaled else None

    def _encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        with torch.no_grad(), self._autocast():
            feats = self.model.encode_image(batch, normalize=True)
        return feats.float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 0), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.no_grad(), self._autocast():
            feats = self.model.encode_text(tokens, normalize=True)
        return feats.float().cpu().numpy()

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def _to_unit_range(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


def load_clip(settings: ClipSettings, device: str, *, offline: bool = True) -> ClipModel:
    """Build the configured model once (per worker); raise ModelLoadError with the way out."""
    import open_clip
    import torch

    name, pretrained = settings.model, settings.pretrained
    with hub_offline(offline):
        try:
            if name.startswith("local-dir:"):
                folder = Path(name.removeprefix("local-dir:"))
                weights = _local_dir_weights(folder)
                if weights is None:
                    raise ModelLoadError(
                        f"clip.model {name}: no open_clip_model.safetensors or .bin in {folder}"
                    )
                model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
                record = ModelRecord(
                    name=name, source=str(folder), weights="file", sha256=file_sha256(weights)
                )
            elif pretrained and Path(pretrained).is_file():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=pretrained, device=device
                )
                record = ModelRecord(
                    name=name, source=pretrained, weights="file", sha256=file_sha256(pretrained)
                )
            else:
                model, preprocess, record = _pretrained_or_random(settings, device)
        except ModelLoadError:
            raise
        except Exception as e:  # open_clip raises RuntimeError/ValueError/OSError for bad names and files
            raise ModelLoadError(
                f"clip.model {name!r} / clip.pretrained {pretrained!r}: {_first_line(e)}"
            ) from None
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    if device == "cuda":
        model = model.to(torch.float16)
    record.version = open_clip.__version__
    return ClipModel(model, preprocess, tokenizer, device, record)


def _pretrained_or_random(settings: ClipSettings, device: str) -> tuple[object, Callable, ModelRecord]:
    import open_clip
    import torch

    name, pretrained = settings.model, settings.pretrained
    failure = "clip.pretrained is null"
    if pretrained:
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device
            )
            return model, preprocess, ModelRecord(name=name, source=pretrained, weights="pretrained")
        except Exception as e:
            if "not found" in str(e).lower() and "config" in str(e).lower():
                raise
            failure = f"weights {name}/{pretrained} could not be loaded ({_first_line(e)[:160]})"
    if not settings.allow_random_weights:
        raise ModelLoadError(
            f"CLIP {failure}. Give clip.pretrained a local checkpoint file, use a precomputed-embedding "
            "input, or set clip.allow_random_weights: true (CLIP scores are then not meaningful)"
        )
    # Seeded so that every worker builds the same random model: embeddings stay comparable.
    torch.manual_seed(settings.seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, device=device)
    source = f"random init, seed {settings.seed}: " + (
        f"pretrained {pretrained!r} not loadable" if pretrained else "no pretrained weights configured"
    )
    return model, preprocess, ModelRecord(name=name, source=source, weights="random")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
