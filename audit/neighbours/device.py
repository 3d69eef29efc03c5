"""Which faiss can run here: faiss-gpu with a visible GPU, else faiss-cpu. Resolved once per process."""

from __future__ import annotations

import functools
import logging

import faiss

from audit.errors import ConfigError

log = logging.getLogger(__name__)

# faiss-gpu caps k and nprobe at 2048 on the GPU.
GPU_MAX_K = 2048


def faiss_gpu_available() -> bool:
    # faiss-cpu has no StandardGpuResources; faiss-gpu on a machine without a GPU reports 0 GPUs.
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.cache
def resolve_faiss_device(requested: str = "auto") -> str:
    """'cuda' without faiss-gpu and a GPU is an error; 'auto' falls back to the CPU and says so once."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"neighbours.device: unknown value {requested!r} (allowed: auto, cpu, cuda)")
    if requested == "cpu":
        return "cpu"
    if faiss_gpu_available():
        return "cuda"
    if requested == "cuda":
        raise ConfigError(
            "neighbours.device: cuda was asked for but faiss has no GPU here "
            "(install the [gpu] extra on a machine with a CUDA GPU, or use device: auto or cpu)"
        )
    log.info("neighbours.device: auto -> cpu (faiss-gpu or a GPU is missing)")
    return "cpu"


@functools.cache
def gpu_resources() -> faiss.StandardGpuResources:
    """One set of GPU scratch memory and streams per process, shared by every GPU index."""
    return faiss.StandardGpuResources()
