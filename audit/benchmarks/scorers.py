"""Throughput of every scorer on this machine: captions/s per text scorer and for language
detection, images/s for open_nsfw, NudeNet, OCR (images with and without text) and PDQ hashing, and
hashes/s for PDQ matching against a list of 10^6 hashes.

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
    from audit.languages import LanguageDetector

    detector = LanguageDetector()
    detector.detect(captions[:256])
    seconds = median_seconds(lambda: detector.detect(captions))
    results["language_fasttext_lite"] = {
        "captions": n,
        "seconds": round(seconds, 4),
        "captions_per_s": round(n / seconds, 1),
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
    out = {
        "opennsfw_cpu": {
            "images": n,
            "seconds": round(seconds, 4),
            "images_per_s": round(n / seconds, 2),
            "provider": scorer.provider,
        }
    }
    import onnxruntime as ort

    device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    out.update(bench_new_image_scorers(images, device))
    return out


def _rate(n: int, seconds: float, unit: str, **extra: object) -> dict:
    return {unit: n, "seconds": round(seconds, 4), f"{unit}_per_s": round(n / seconds, 2), **extra}


def bench_new_image_scorers(images: list, device: str = "cpu") -> dict[str, dict]:
    """NudeNet (batched), OCR on photos without text and on images with rendered text, PDQ hashing."""
    import io

    from PIL import Image

    from audit.nudenet_scorer import NudeNetScorer
    from audit.ocr import OcrReader
    from audit.pdq import pdq_hash
    from audit.sample import build_rows

    n = len(images)
    out: dict[str, dict] = {}
    nudenet = NudeNetScorer(device, intra_op_threads=1)
    nudenet.score(images[:8])
    seconds = median_seconds(lambda: [nudenet.score(images[s : s + 32]) for s in range(0, n, 32)], repeats=1)
    out[f"nudenet_{device}"] = _rate(n, seconds, "images", provider=nudenet.provider, batch=32)
    reader = OcrReader(device=device, threads=1)
    texts = [
        Image.open(io.BytesIO(r.image)).convert("RGB")
        for r in build_rows()
        if r.case in ("hateful_meme", "image_text_benign")
    ]
    with_text = [texts[i % len(texts)] for i in range(max(8, n // 4))]
    reader.read(images[:2])
    seconds = median_seconds(lambda: reader.read(images), repeats=1)
    out[f"ocr_{device}_photos"] = _rate(
        n, seconds, "images", provider=reader.provider, max_side=reader.max_side
    )
    seconds = median_seconds(lambda: reader.read(with_text), repeats=1)
    out[f"ocr_{device}_text_images"] = _rate(
        len(with_text), seconds, "images", provider=reader.provider, note="one line of meme text each"
    )
    seconds = median_seconds(lambda: [pdq_hash(im) for im in images])
    out["pdq_hash_cpu"] = _rate(n, seconds, "images")
    return out


def bench_pdq_matching(list_size: int, queries: int = 2000, seed: int = 0) -> dict[str, object]:
    """hashes/s matched against a list of ``list_size`` random PDQ hashes (multi-index hashing), with
    every other query a listed hash with up to 31 bits flipped (all of those must match)."""
    import time

    from audit.pdq import PdqIndex

    rng = np.random.default_rng(seed)
    listed = rng.integers(0, 256, size=(list_size, 32), dtype=np.uint8)
    t0 = time.perf_counter()
    index = PdqIndex([row.tobytes().hex() for row in listed])
    build = time.perf_counter() - t0
    bits = np.unpackbits(listed[rng.integers(0, list_size, queries // 2)], axis=1)
    for row in bits:
        row[rng.choice(256, size=int(rng.integers(0, 32)), replace=False)] ^= 1
    near = np.packbits(bits, axis=1)
    far = rng.integers(0, 256, size=(queries - len(near), 32), dtype=np.uint8)
    hexes = [row.tobytes().hex() for row in np.concatenate([near, far])]
    index.nearest(hexes[:64])
    t0 = time.perf_counter()
    distances, _ = index.nearest(hexes)
    seconds = time.perf_counter() - t0
    return {
        "list_hashes": list_size,
        "queries": queries,
        "index_build_seconds": round(build, 3),
        "seconds": round(seconds, 4),
        "hashes_per_s": round(queries / seconds, 1),
        "near_copies_matched": int((distances[: len(near)] >= 0).sum()),
        "far_queries_matched": int((distances[len(near) :] >= 0).sum()),
        "near_copies": len(near),
        "index": f"{index.mode} (exact within 31 bits)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/results/scorers.json")
    parser.add_argument("--captions", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--pdq-list", type=int, default=1_000_000, help="hashes in the PDQ list")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    text = bench_text(args.captions)
    images = bench_images(args.images)
    pdq = bench_pdq_matching(args.pdq_list)
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
        "pdq_matching": pdq,
        "targets": targets,
        "gpu": "not measured: no CUDA device on this machine",
    }
    print(write_json(args.out, doc))
    for name, r in images.items():
        print(f"{name}: {r['images_per_s']:,.2f} images/s")
    print(f"pdq matching vs {pdq['list_hashes']:,} hashes: {pdq['hashes_per_s']:,.0f} hashes/s")
    for name, t in targets.items():
        print(
            f"{name}: {t['measured']:,.0f} captions/s (target {t['target_captions_per_s']:,}) "
            f"{'PASS' if t['pass'] else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
