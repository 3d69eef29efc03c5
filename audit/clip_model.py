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
from audit.text_scorers import bounded_prefix

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


# An image whose shortest-side resize would exceed this many times the model's input is resampled
# from the region the centre crop keeps, not resized whole (aspect ratios above about 8:1).
MAX_RESIZE_FACTOR = 8


@dataclass(frozen=True)
class ResizePlan:
    """open_clip's default preprocess starts by scaling the shortest side to the model's size and
    keeping the centre: a 1x20000 strip was scaled to 224x4480000 (25 s, 5 GB) to keep 224x224.

    ``centre`` resamples just that centre from the source (PIL's resize ``box``): the same filter
    and sampling positions as resizing the whole image and cropping, so the same pixels, with work
    proportional to the model's input. ``of`` is None for preprocesses whose resize is bounded
    anyway (longest side, squash).
    """

    resize: Callable[[int, int], tuple[int, int]]  # (w, h) -> resized (w, h), as the preprocess does
    crop_w: int
    crop_h: int
    resample: int  # PIL filter of the preprocess's interpolation

    @classmethod
    def of(cls, preprocess: object) -> ResizePlan | None:
        from torchvision import transforms as T
        from torchvision.transforms.functional import pil_modes_mapping

        steps = list(getattr(preprocess, "transforms", ()))
        if len(steps) < 2 or not isinstance(steps[1], T.CenterCrop):
            return None
        first, (crop_h, crop_w) = steps[0], steps[1].size
        size = getattr(first, "size", ())
        size = [size] if isinstance(size, int) else list(size)
        if isinstance(first, T.Resize) and first.max_size is None and len(size) == 1:
            resize = functools.partial(_shortest_side_resize, size[0])
        elif type(first).__name__ == "ResizeKeepRatio" and first.longest == 0 and len(size) == 2:
            if first.random_scale_prob or first.random_aspect_prob:
                return None
            resize = functools.partial(_keep_ratio_resize, size[0], size[1])
        else:
            return None
        return cls(resize, crop_w, crop_h, pil_modes_mapping[first.interpolation])

    def too_large(self, width: int, height: int) -> bool:
        w, h = self.resize(width, height)
        fits = w >= self.crop_w and h >= self.crop_h  # else the crop pads: leave it to the preprocess
        return fits and w * h > MAX_RESIZE_FACTOR * self.crop_w * self.crop_h

    def centre(self, im: Image.Image) -> Image.Image:
        """The centre crop of the resized image, resampled straight from the source region."""
        w, h = self.resize(*im.size)
        left = round((w - self.crop_w) / 2.0)  # as torchvision's center_crop (half to even)
        top = round((h - self.crop_h) / 2.0)
        sx, sy = im.size[0] / w, im.size[1] / h
        box = (left * sx, top * sy, (left + self.crop_w) * sx, (top + self.crop_h) * sy)
        return im.resize((self.crop_w, self.crop_h), self.resample, box=box)


def _shortest_side_resize(size: int, width: int, height: int) -> tuple[int, int]:
    """torchvision's Resize(size) output (w, h): the shortest side becomes ``size``."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def _keep_ratio_resize(target_h: int, target_w: int, width: int, height: int) -> tuple[int, int]:
    """open_clip's ResizeKeepRatio(longest=0) output (w, h)."""
    ratio = min(height / target_h, width / target_w)
    return round(width / ratio), round(height / ratio)


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
        """Embeddings of PIL images (``preprocess_image``) and TensorImages (``preprocess_pixels``)."""
        import torch

        if not images:
            return np.zeros((0, 0), np.float32)
        batch = [
            self.preprocess_pixels(im.pixels) if isinstance(im, TensorImage) else self.preprocess_image(im)
            for im in images
        ]
        return self._encode_batch(torch.stack(batch))

    def preprocess_image(self, im: Image.Image) -> torch.Tensor:
        """open_clip's preprocess of one PIL image on the model's device, its work bounded whatever
        the aspect ratio (``ResizePlan``)."""
        plan = self._resize_plan
        if plan is not None and plan.too_large(*im.size):
            im = plan.centre(im)
        return self.preprocess(im).to(self.device)

    def preprocess_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """open_clip's preprocess of one CHW uint8 RGB tensor, run on the model's device: the same
        resize, crop and normalisation as for a PIL image, without going through PIL."""
        steps, plan = self._tensor_steps, self._resize_plan
        too_large = plan is not None and plan.too_large(int(pixels.shape[2]), int(pixels.shape[1]))
        if steps is None or too_large:  # a step only PIL images take, or an extreme aspect ratio
            hwc = pixels.permute(1, 2, 0).contiguous().cpu().numpy()
            return self.preprocess_image(Image.fromarray(hwc))
        x = pixels.to(self.device)
        for step in steps:
            x = step(x)
        return x

    @functools.cached_property
    def _resize_plan(self) -> ResizePlan | None:
        return ResizePlan.of(self.preprocess)

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

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """The model's token ids for each caption, in time linear in its length.

        CLIP's tokenizer is quadratic in a word's length (BPE merges: 15 s for one 16k-letter word)
        and in a run of combining marks (ftfy's NFC), and reads the whole caption only to keep the
        first 77 tokens; so a long caption is handed over as its shortest prefix whose tokens
        overfill the context by half (``bounded_prefix``): CLIP keeps the same tokens.
        """
        context = int(getattr(self.tokenizer, "context_length", None) or 77)
        pad = getattr(getattr(self.tokenizer, "tokenizer", None), "pad_token_id", None) or 0

        def overfills(prefix: str) -> bool:
            return int(self.tokenizer([prefix], context_length=context * 3 // 2)[0, -1]) != pad

        return self.tokenizer([bounded_prefix(t, overfills) for t in texts])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, 0), np.float32)
        tokens = self.tokenize(texts).to(self.device)
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
