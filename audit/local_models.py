"""Small real models built locally, with random weights, for tests and benchmarks on machines
that cannot download weights. They go through the same loading paths as released weights
(open_clip's local-dir:, Detoxify's checkpoint format); their outputs mean nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

# A real open_clip architecture, shrunk so CPU runs stay fast.
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """An open_clip local-dir folder (config + weights) for `clip.model: local-dir:<folder>`."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    )
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}")
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def build_detoxify_checkpoint(folder: Path, words: Sequence[str], bert_config: dict | None = None):
    """A Detoxify checkpoint (+ transformers config and tokenizer folder) of a BERT classifier.

    Returns (checkpoint path, huggingface_config_path, the model) for
    `text.detoxify.checkpoint` / `text.detoxify.huggingface_config_path`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    hf = folder / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words)]
    if bert_config is None:  # bert-base-uncased shape, as Detoxify's `original`
        vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(hf / "vocab.txt")).save_pretrained(hf)
    cfg = BertConfig(**{"vocab_size": len(vocab), **(bert_config or {}), "num_labels": len(DETOXIFY_CLASSES)})
    cfg.save_pretrained(hf)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    args = {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": len(DETOXIFY_CLASSES)}  # fmt: skip
    checkpoint = {
        "config": {"arch": {"args": args}, "dataset": {"args": {"classes": DETOXIFY_CLASSES}}},
        "state_dict": model.state_dict(),
    }
    torch.save(checkpoint, folder / "detoxify.ckpt")
    return folder / "detoxify.ckpt", hf, model
