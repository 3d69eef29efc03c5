"""Throughput of every scorer on this machine: captions/s per text scorer, images/s for open_nsfw.

    python -m audit.benchmarks.scorers --out bench/results/scorers.json

Text scorers run pinned to one core (the targets are per core). Detoxify is measured with a
bert-base-sized model of random weights built here (no released checkpoint can be downloaded
offline); its cost is the architecture's, which is what throughput depends on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from pathlib import Path

import numpy as np

from audit.benchmarks.common import machine, median_seconds, write_json
from audit.local_models import build_detoxify_checkpoint

TARGETS = {"lexicon": 300_000, "hatesonar": 5_000}  # captions/s on one core
WORDS = [
    "a",
    "the",
    "photo",
    "of",
    "dog",
    "cat",
    "beach",
    "sunset",
    "portrait",
    "woman",
    "man",
    "child",
    "city",
    "street",
    "car",
    "red",
    "blue",
    "green",
    "old",
    "new",
    "vintage",
    "poster",
    "logo",
    "design",
    "wedding",
    "dress",
    "shoes",
    "kitchen",
    "table",
    "food",
    "pizza",
    "mountain",
    "lake",
    "tree",
    "flower",
    "free",
    "download",
    "hd",
    "wallpaper",
    "4k",
    "stock",
    "image",
    "illustration",
    "vector",
    "art",
    "print",
    "canvas",
    "sale",
    "best",
    "cheap",
]


def synthetic_captions(n: int, seed: int = 0) -> list[str]:
    """LAION-like alt-text: 3-25 words, some numbers, a few non-ASCII captions."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 26, size=n)
    vocab = np.asarray(WORDS)
    out = []
    for i, k in enumerate(lengths):
        words = list(vocab[rng.integers(0, len(vocab), size=k)])
        if i % 20 == 0:
            words.append("café")
        if i % 7 == 0:
            words.append(str(int(rng.integers(1, 3000))))
        out.append(" ".join(words))
    return out


def _bert_base_checkpoint(folder: Path) -> tuple[str, str]:
    ckpt, hf, _ = build_detoxify_checkpoint(folder, [*sorted(set(WORDS)), "café"])
    return str(ckpt), str(hf)


def bench_text(n: int) -> dict[str, dict]:
    from audit.config import DetoxifySettings
    from audit.detoxify_scorer import DetoxifyScorer
    from audit.lexicon import LexiconScorer
    from audit.pii import PiiScorer
    from audit.text_scorers import HateSonarScorer, ProfanityCheckScorer

    captions = synthetic_captions(n)
    results: dict[str, dict] = {}
    scorers = {
        "lexicon": LexiconScorer(),
        "pii": PiiScorer(),
        "profanity_check": ProfanityCheckScorer(),
        "hatesonar": HateSonarScorer(threads=1),
    }
    for name, scorer in scorers.items():
        scorer.score(captions[:256])  # warm-up
        seconds = median_seconds(lambda s=scorer: s.score(captions))
        results[name] = {"captions": n, "seconds": round(seconds, 4), "captions_per_s": round(n / seconds, 1)}
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, hf = _bert_base_checkpoint(Path(tmp))
        detox = DetoxifyScorer(DetoxifySettings(checkpoint=ckpt, huggingface_config_path=hf, batch_size=32))
        sample = captions[:128]
        detox.score(sample[:32])
        seconds = median_seconds(lambda: detox.score(sample), repeats=1)
    results["detoxify_bert_base_random_cpu"] = {
        "captions": len(sample),
        "seconds": round(seconds, 4),
        "captions_per_s": round(len(sample) / seconds, 1),
        "note": "bert-base architecture, random weights; measured on CPU (no GPU here)",
    }
    return results


def bench_images(n: int) -> dict[str, dict]:
    from PIL import Image

    from audit.image_scorers import OpenNsfwScorer
    from audit.sample import build_rows

    photos = [r.image for r in build_rows() if r.case in ("matching", "generated") and r.image]
    import io

    images = [Image.open(io.BytesIO(photos[i % len(photos)])).convert("RGB") for i in range(n)]
    scorer = OpenNsfwScorer(intra_op_threads=1)
    scorer.score(images[:8])
    seconds = median_seconds(lambda: scorer.score(images), repeats=1)
    return {
        "opennsfw_cpu": {
            "images": n,
            "seconds": round(seconds, 4),
            "images_per_s": round(n / seconds, 2),
            "provider": scorer.provider,
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/results/scorers.json")
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    text = bench_text(args.captions)
    images = bench_images(args.images)
    targets = {
        name: {
            "target_captions_per_s": target,
            "measured": text[name]["captions_per_s"],
            "pass": text[name]["captions_per_s"] >= target,
        }
        for name, target in TARGETS.items()
    }
    doc = {
        "benchmark": "scorers",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "text": text,
        "images": images,
        "targets": targets,
        "gpu": "not measured: no CUDA device on this machine",
    }
    print(write_json(args.out, doc))
    for name, t in targets.items():
        print(
            f"{name}: {t['measured']:,.0f} captions/s (target {t['target_captions_per_s']:,}) "
            f"{'PASS' if t['pass'] else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
