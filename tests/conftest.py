"""Shared fixtures: the real sample corpus, a tiny locally built CLIP checkpoint, real audit runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CONFIG = REPO / "pipelines" / "configs" / "sample.yaml"

from audit.local_models import build_tiny_clip  # noqa: E402


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real open_clip architecture, shrunk; random weights saved to a real checkpoint file and
    loaded through open_clip's local-dir path."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from audit.sample import build_sample

    out = tmp_path_factory.mktemp("sample")
    build_sample(out)
    return out


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """One real Dask cluster (scheduler + worker processes) shared by the tests that join it, so
    each test does not pay for starting workers and loading models again."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def make_config(tiny_clip_dir: Path, dask_scheduler: str) -> Callable[..., object]:
    """The sample config with the tiny CLIP, joining the shared cluster; keyword overrides are dotted keys."""
    from audit.config import load_config

    def make(**overrides: object) -> object:
        base = {
            "clip.model": f"local-dir:{tiny_clip_dir}",
            "clip.pretrained": None,
            "clip.allow_random_weights": False,
            "dask.scheduler": dask_scheduler,
            "dask.retries": 0,
        }
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config(SAMPLE_CONFIG, base)

    return make


@pytest.fixture(scope="session")
def sample_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make audit` runs: the sample config as shipped (ViT-B-32, random weights allowed and
    reported), on a two-worker LocalCluster. Shared by the read-only tests."""
    from audit.config import load_config
    from audit.pipelines.audit_run import run_audit

    out = tmp_path_factory.mktemp("runs") / "sample"
    shards = [str(sample_dir / "parquet"), str(sample_dir / "webdataset")]
    overrides = {
        "shards": shards,
        "out": str(out),
        "dask.n_workers": 2,
        "images.known_bad_lists": [str(sample_dir / "known_bad.csv")],
    }
    run_audit(load_config(SAMPLE_CONFIG, overrides))
    return out
