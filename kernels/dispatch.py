"""One table from (kernel, device) to implementation, so callers never branch on the device.

    paired = get_kernel("paired_cosine_int8", cfg.device)   # device: auto | cpu | cuda
    cos = paired(quantize(img), quantize(txt))

``cuda`` without a GPU raises ConfigError; ``auto`` falls back to the CPU and logs it once (both
through ``audit.devices.resolve_device``). Implementations are imported on first use, so the CPU
path never imports torch or triton.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from audit.devices import resolve_device
from audit.errors import ConfigError

_MODULES = {"cpu": "audit.kernels.int8_cpu", "cuda": "audit.kernels.int8_triton"}

# kernel name -> function name stem; the implementation is f"{stem}_{device}" in _MODULES[device].
KERNELS: dict[str, str] = {
    "quantize_int8": "quantize_int8",
    "dequantize_int8": "dequantize_int8",
    "paired_cosine_int8": "paired_cosine_int8",
    "concept_scores_int8": "concept_scores_int8",
}


def get_kernel(name: str, device: str = "auto") -> Callable[..., Any]:
    """The implementation of kernel ``name`` for ``device`` (auto | cpu | cuda)."""
    if name not in KERNELS:
        raise ConfigError(f"kernel: unknown name {name!r} (known: {', '.join(sorted(KERNELS))})")
    resolved = resolve_device(device)
    module = importlib.import_module(_MODULES[resolved])
    return getattr(module, f"{KERNELS[name]}_{resolved}")


def kernel_backends(device: str = "auto") -> dict[str, str]:
    """name -> 'module:function' actually used on ``device``, for the run manifest."""
    resolved = resolve_device(device)
    return {name: f"{_MODULES[resolved]}:{stem}_{resolved}" for name, stem in KERNELS.items()}
