"""Resolve ``device: auto|cpu|cuda`` once per process."""

from __future__ import annotations

import functools
import logging

from audit.errors import ConfigError

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    """torch's answer, but without importing torch (seconds) on a machine with no NVIDIA driver:
    no /dev/nvidia* (nor WSL2's /dev/dxg) device node means no CUDA GPU, whatever torch says."""
    if not _nvidia_device_nodes():
        return False
    import torch

    return torch.cuda.is_available()


def _nvidia_device_nodes() -> bool:
    from pathlib import Path

    dev = Path("/dev")
    return not dev.is_dir() or any(dev.glob("nvidia*")) or (dev / "dxg").exists()


@functools.cache
def resolve_device(requested: str) -> str:
    """'cuda' without a GPU is an error; 'auto' falls back to the CPU and says so once."""
    if requested == "cpu":
        return "cpu"
    has_cuda = cuda_available()
    if requested == "cuda":
        if not has_cuda:
            raise ConfigError(
                "device: cuda was asked for but no CUDA GPU is visible (use device: auto or cpu)"
            )
        return "cuda"
    if requested != "auto":
        raise ConfigError(f"device: unknown value {requested!r} (allowed: auto, cpu, cuda)")
    if not has_cuda:
        log.info("device: auto -> cpu (no CUDA GPU visible)")
        return "cpu"
    return "cuda"
