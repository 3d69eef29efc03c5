from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from audit.clip_model import ClipModel, file_sha256, load_clip
from audit.config import ClipSettings
from audit.errors import ModelLoadError
from audit.images import TensorImage, decode_image
from audit.jpeg_batch import decode_jpeg_batch


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


# --- pixels decoded by torchvision: preprocessed as tensors, on the model's device -----------------


def _photo_bytes() -> list[bytes]:
    blobs = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        buf = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    return blobs


def _decoded_photos(device: str) -> list[TensorImage]:
    out = decode_jpeg_batch(_photo_bytes(), 10**7, device)
    assert all(isinstance(im, TensorImage) for im in out)
    return out  # type: ignore[return-value]


def _tiny(tiny_clip_dir: Path, device: str) -> ClipModel:
    return load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), device)


def test_tensor_preprocess_gives_the_pixels_of_open_clips_pil_preprocess(tiny_clip_dir: Path) -> None:
    # the tiny checkpoint's own preprocess (32 px, mean = std = 0.5, not CLIP's usual values):
    # a tensor path with hard-coded sizes or statistics would be far off
    clip = _tiny(tiny_clip_dir, "cpu")
    level = 1 / 255 / 0.5  # one 8-bit level after normalisation
    for im in _decoded_photos("cpu"):
        got, want = clip.preprocess_pixels(im.pixels), clip.preprocess(im.pil())
        assert got.shape == want.shape == (3, 32, 32) and got.dtype == want.dtype
        diff = (got - want).abs()
        assert diff.mean() < 0.5 * level and diff.max() <= 5 * level  # bicubic rounding only


def test_tensor_and_pil_images_give_the_same_embeddings_in_one_batch(tiny_clip_dir: Path) -> None:
    clip = _tiny(tiny_clip_dir, "cpu")
    decoded = _decoded_photos("cpu")
    pil = [im.pil() for im in decoded]
    mixed = [decoded[0], pil[1], decoded[2], pil[3], decoded[4]]
    ref = clip.encode_images(pil)
    got = clip.encode_images(mixed)
    assert got.shape == ref.shape == (5, 32)
    assert np.all((got * ref).sum(axis=1) >= 0.999)
    np.testing.assert_allclose(got[[1, 3]], ref[[1, 3]], atol=1e-5)  # PIL rows: the unchanged path


def test_a_preprocess_step_only_pil_can_take_sends_tensors_through_pil(tiny_clip_dir: Path) -> None:
    import open_clip

    clip = _tiny(tiny_clip_dir, "cpu")
    # letterboxing (ResizeKeepRatio + CenterCropOrPad) works on PIL images only
    letterbox = replace(clip, preprocess=open_clip.image_transform(32, is_train=False, resize_mode="longest"))
    for im in _decoded_photos("cpu")[:2]:
        assert torch.equal(letterbox.preprocess_pixels(im.pixels), letterbox.preprocess(im.pil()))


@pytest.mark.gpu
def test_images_decoded_on_the_gpu_embed_like_the_pil_path_on_the_cpu(tiny_clip_dir: Path) -> None:
    gpu, cpu = _tiny(tiny_clip_dir, "cuda"), _tiny(tiny_clip_dir, "cpu")
    decoded = _decoded_photos("cuda")
    assert all(im.pixels.is_cuda for im in decoded)
    got = gpu.encode_images(decoded)  # fp16 model, pixels never leave the GPU before CLIP
    ref = cpu.encode_images([decode_image(im_bytes, 10**7) for im_bytes in _photo_bytes()])
    assert np.all((got * ref).sum(axis=1) >= 0.99)
