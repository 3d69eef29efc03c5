"""The (kernel, device) dispatch table and its device rules."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import audit.devices
from audit.devices import resolve_device
from audit.errors import ConfigError
from audit.kernels import int8_cpu
from audit.kernels.dispatch import KERNELS, get_kernel, kernel_backends


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(audit.devices, "cuda_available", lambda: False)
    resolve_device.cache_clear()  # resolution is cached per process; start from scratch
    yield
    resolve_device.cache_clear()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_cpu_gets_the_numba_implementation(name: str) -> None:
    assert get_kernel(name, "cpu") is getattr(int8_cpu, f"{name}_cpu")


def test_cuda_without_a_gpu_is_a_config_error(no_gpu: None) -> None:
    with pytest.raises(ConfigError, match="cuda"):
        get_kernel("paired_cosine_int8", "cuda")


def test_auto_without_a_gpu_falls_back_to_cpu_and_says_so_once(
    no_gpu: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="audit.devices"):
        first = get_kernel("paired_cosine_int8", "auto")
        second = get_kernel("concept_scores_int8", "auto")
    assert first is int8_cpu.paired_cosine_int8_cpu and second is int8_cpu.concept_scores_int8_cpu
    assert [r.getMessage() for r in caplog.records].count("device: auto -> cpu (no CUDA GPU visible)") == 1


def test_auto_with_a_gpu_picks_the_triton_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit.devices, "cuda_available", lambda: True)
    resolve_device.cache_clear()
    try:
        fn = get_kernel("paired_cosine_int8", "auto")
    finally:
        resolve_device.cache_clear()
    assert fn.__module__ == "audit.kernels.int8_triton" and fn.__name__ == "paired_cosine_int8_cuda"


def test_unknown_kernel_or_device_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown name"):
        get_kernel("cosine_fp8", "cpu")
    with pytest.raises(ConfigError, match="unknown value"):
        get_kernel("paired_cosine_int8", "tpu")


def test_every_kernel_has_both_implementations_with_the_same_signature() -> None:
    import inspect

    import audit.kernels.int8_triton as tri

    for name in KERNELS:
        cpu, cuda = getattr(int8_cpu, f"{name}_cpu"), getattr(tri, f"{name}_cuda")
        assert inspect.signature(cpu) == inspect.signature(cuda), name


def test_kernel_backends_names_what_runs() -> None:
    assert kernel_backends("cpu")["paired_cosine_int8"] == "audit.kernels.int8_cpu:paired_cosine_int8_cpu"
    assert set(kernel_backends("cpu")) == set(KERNELS)
