"""The CLIP model only when rows need it: facts about it (architecture, dimension, weights record)
and the embedded prompt bank are cached on disk, so an audit of precomputed embeddings never
builds the model, and a worker never encodes the prompt bank again.

Profiled (issue 12): a worker spent ~40 s loading models, 27 s of it encoding the ~200 concept
prompts with the CLIP text tower on the CPU and 8 s building ViT-B-32, on shards whose rows all
carried embeddings. Now ``LazyClip`` builds the model on the first ``encode_*`` call, and
``load_probes`` reads the bank's embeddings from ``user_cache_dir("clip")``.

A cache entry is keyed by everything that decides the embeddings: the model name, the pretrained
tag or file, whether random weights are allowed and their seed, the device (CUDA encodes in
float16), open_clip's version, the bank's sha256, and the weights on disk (size and modification
time of the checkpoint file, or of the Hugging Face and open_clip download caches for a pretrained
tag, so weights that appear later are picked up).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from audit.cache_dir import user_cache_dir
from audit.clip_model import ClipModel, load_clip
from audit.concepts import ConceptBank, ConceptProbes
from audit.config import ClipSettings
from audit.errors import ModelLoadError
from audit.schemas import ModelRecord

log = logging.getLogger(__name__)
CACHE_VERSION = "1"
# clip settings that do not change the model or the prompt embeddings
NOT_IN_KEY = {"batch_size", "concepts", "encode_captions_on_cpu"}


@dataclass(frozen=True)
class ClipInfo:
    """What outputs need to know of the CLIP model without running it."""

    architecture: str
    embed_dim: int
    record: ModelRecord

    @property
    def meaningful(self) -> bool:
        return self.record.weights != "random"


class LazyClip:
    """``ClipModel``'s interface; the model itself is built on the first encode call."""

    def __init__(self, settings: ClipSettings, device: str, *, offline: bool = True) -> None:
        self.settings, self.device, self.offline = settings, device, offline
        self.info: ClipInfo | None = None
        self._model: ClipModel | None = None

    @property
    def built(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> ClipModel:
        if self._model is None:
            model = load_clip(self.settings, self.device, offline=self.offline)
            built = info_of(model)
            if self.info is not None and (self.info.record, self.info.embed_dim) != (
                built.record,
                built.embed_dim,
            ):
                raise ModelLoadError(
                    f"clip.model {self.settings.model}: the weights changed since the prompt bank was "
                    f"embedded ({self.info.record.weights} then, {built.record.weights} now): rerun the audit"
                )
            self._model, self.info = model, built
        return self._model

    def resolve(self) -> ClipInfo:
        if self.info is None:
            self.info = info_of(self.model)
        return self.info

    @property
    def record(self) -> ModelRecord:
        return self.resolve().record

    @property
    def meaningful(self) -> bool:
        return self.resolve().meaningful

    @property
    def architecture(self) -> str:
        return self.resolve().architecture

    @property
    def embed_dim(self) -> int:
        return self.resolve().embed_dim

    def encode_texts(self, texts):
        return self.model.encode_texts(texts)

    def encode_images(self, images):
        return self.model.encode_images(images)


def info_of(model: ClipModel) -> ClipInfo:
    return ClipInfo(model.architecture, int(model.embed_dim), model.record)


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}:absent"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _download_caches() -> list[Path]:
    """Where open_clip's pretrained tags are downloaded to (Hugging Face hub, open_clip's own)."""
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or hf_home / "hub")
    return [hub, Path.home() / ".cache" / "clip"]


def weights_fingerprint(settings: ClipSettings) -> str:
    """Size and mtime of the weights a load would read, or of the download caches (no torch)."""
    name, pretrained = settings.model, settings.pretrained
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        files = ("open_clip_config.json", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        return ";".join(_stat(folder / f) for f in files)
    if pretrained and Path(pretrained).is_file():
        return _stat(Path(pretrained))
    parts = []
    for cache in _download_caches():
        entries = sorted(p for p in cache.glob("*") if "clip" in p.name.lower()) if cache.is_dir() else []
        parts += [_stat(cache)] + [_stat(p) for p in entries]
    return ";".join(parts)


def cache_key(settings: ClipSettings, device: str, offline: bool, bank: ConceptBank | None) -> str:
    try:
        open_clip_version = metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        open_clip_version = "none"
    doc = {
        "v": CACHE_VERSION,
        "clip": settings.model_dump(mode="json", exclude=NOT_IN_KEY),
        "device": device,
        "offline": offline,
        "open_clip": open_clip_version,
        "bank": bank.sha256 if bank is not None else None,
        "weights": weights_fingerprint(settings),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _cache_path(key: str) -> Path:
    return user_cache_dir("clip", f"{key}.npz")


def _save(path: Path, info: ClipInfo, probes: ConceptProbes | None) -> None:
    """Atomically (temp + rename): workers starting together may write the same entry."""
    doc = {
        "architecture": info.architecture,
        "embed_dim": info.embed_dim,
        "record": info.record.model_dump(mode="json"),
    }
    arrays: dict[str, np.ndarray] = {"info": np.frombuffer(json.dumps(doc).encode(), np.uint8)}
    if probes is not None:
        arrays["matrix"] = probes.matrix
        arrays["negative_sizes"] = np.asarray([len(n) for n in probes.negatives], np.int64)
        arrays["negatives"] = np.concatenate(
            [np.asarray(n, np.float32).reshape(-1, probes.matrix.shape[1]) for n in probes.negatives]
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            np.savez(f, **arrays)
        os.replace(f.name, path)
    except OSError as e:  # a read-only cache costs a rebuild next time, nothing else
        log.warning("could not cache the CLIP prompt bank in %s: %s", path.parent, e)


def _load(path: Path, bank: ConceptBank | None) -> tuple[ClipInfo, ConceptProbes | None] | None:
    try:
        with np.load(path) as z:
            doc = json.loads(bytes(z["info"]))
            info = ClipInfo(doc["architecture"], int(doc["embed_dim"]), ModelRecord(**doc["record"]))
            if bank is None:
                return info, None
            sizes = z["negative_sizes"]
            negatives = np.split(z["negatives"], np.cumsum(sizes)[:-1]) if len(sizes) else []
            return info, ConceptProbes(bank, z["matrix"], [np.asarray(n) for n in negatives])
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        log.warning("ignoring an unreadable CLIP cache entry %s (%s)", path, e)
        return None


def probes_cached(settings: ClipSettings, device: str, offline: bool, bank: ConceptBank | None) -> bool:
    """Whether ``load_probes`` would read the cache (and so build no CLIP model)."""
    return _cache_path(cache_key(settings, device, offline, bank)).is_file()


def load_probes(clip: LazyClip, bank: ConceptBank | None) -> ConceptProbes | None:
    """The bank embedded by ``clip`` (and ``clip.info``), from the cache or built and cached."""
    path = _cache_path(cache_key(clip.settings, clip.device, clip.offline, bank))
    if path.is_file() and (hit := _load(path, bank)) is not None:
        clip.info, probes = hit
        return probes
    probes = ConceptProbes.build(bank, clip.encode_texts) if bank is not None else None
    _save(path, clip.resolve(), probes)
    return probes
