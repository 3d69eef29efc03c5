"""Detoxify through its real loading paths: released model names or a local checkpoint.

A local checkpoint is Detoxify's own format (``{"config": {...}, "state_dict": ...}``) plus a
folder with the transformers config and tokenizer files (``huggingface_config_path``), so it
loads with no network at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

import numpy as np

from audit.clip_model import file_sha256, hub_offline
from audit.config import DetoxifySettings
from audit.errors import ModelLoadError
from audit.languages import DETOXIFY_MULTILINGUAL, ENGLISH
from audit.schemas import ModelRecord
from audit.text_scorers import bounded_prefix

# Detoxify's class names (after its own renaming) -> our score columns
MAX_TOKENS = 512  # BERT's window; Detoxify truncates to it

DETOXIFY_COLUMNS = {
    "toxicity": "detoxify_toxicity",
    "severe_toxicity": "detoxify_severe_toxicity",
    "obscene": "detoxify_obscene",
    "threat": "detoxify_threat",
    "insult": "detoxify_insult",
    "identity_attack": "detoxify_identity_attack",
    "sexual_explicit": "detoxify_sexual_explicit",
}


class DetoxifyScorer:
    name = "detoxify"
    columns = tuple(DETOXIFY_COLUMNS.values())

    def __init__(self, settings: DetoxifySettings, device: str = "cpu", *, offline: bool = True) -> None:
        import torch
        from detoxify.detoxify import get_model_and_tokenizer, load_checkpoint

        self.device = device
        self.batch_size = settings.batch_size
        multilingual = settings.model_type == "multilingual"
        try:
            with hub_offline(offline):
                if settings.checkpoint:
                    loaded = torch.load(settings.checkpoint, map_location=device, weights_only=False)
                    if "config" not in loaded or "state_dict" not in loaded:
                        raise ModelLoadError(
                            f"text.detoxify.checkpoint {settings.checkpoint}: not a Detoxify checkpoint"
                        )
                    args = dict(loaded["config"]["arch"]["args"])
                    # Detoxify's multilingual checkpoint is an XLM-RoBERTa: used as such when given
                    multilingual = multilingual or "xlm" in str(args.get("model_type", "")).lower()
                    if settings.huggingface_config_path:
                        # resolve the base architecture locally instead of by hub name
                        args["model_type"] = settings.huggingface_config_path
                    self.model, self.tokenizer = get_model_and_tokenizer(
                        **args,
                        state_dict=loaded["state_dict"],
                        huggingface_config_path=settings.huggingface_config_path,
                    )
                    rename = {
                        "toxic": "toxicity",
                        "identity_hate": "identity_attack",
                        "severe_toxic": "severe_toxicity",
                    }
                    self.class_names = [
                        rename.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]
                    ]
                    source, weights, sha = settings.checkpoint, "file", file_sha256(settings.checkpoint)
                else:
                    self.model, self.tokenizer, self.class_names = load_checkpoint(
                        model_type=settings.model_type, device=device
                    )
                    source, weights, sha = settings.model_type, "pretrained", None
        except ModelLoadError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ModelLoadError(
                f"Detoxify {settings.checkpoint or settings.model_type!r} could not be loaded ({first}); "
                "give text.detoxify.checkpoint and huggingface_config_path for an offline load"
            ) from None
        self.model.to(device).eval()
        # the multilingual model (XLM-R) reads 7 languages; original and unbiased (BERT) English only
        self.languages = DETOXIFY_MULTILINGUAL if multilingual else ENGLISH
        self.record = ModelRecord(
            name=f"detoxify:{'multilingual' if multilingual else settings.model_type}",
            source=source,
            weights=weights,
            sha256=sha,
            version=metadata.version("detoxify"),
        )

    def _readable_prefix(self, text: str) -> str:
        """What the model reads of ``text``: BERT's tokenizer is super-linear on some long captions
        and the model keeps MAX_TOKENS tokens anyway, so a long caption is handed over as the
        shortest prefix that overfills them (the same tokens reach the model)."""
        if len(text) <= MAX_TOKENS:
            return text
        limit = MAX_TOKENS * 3 // 2  # margin for a word cut at the prefix's end

        def overfills(prefix: str) -> bool:
            return len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) > limit

        return bounded_prefix(text, overfills)

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        n = len(texts)
        out = {col: np.full(n, np.nan, np.float32) for col in self.columns}
        for start in range(0, n, self.batch_size):
            batch = [self._readable_prefix(t) for t in texts[start : start + self.batch_size]]
            inputs = self.tokenizer(
                batch, return_tensors="pt", truncation=True, padding=True, max_length=MAX_TOKENS
            )
            with torch.no_grad():
                logits = self.model(**inputs.to(self.device))[0]
            probs = torch.sigmoid(logits).float().cpu().numpy()
            for j, cls in enumerate(self.class_names):
                if cls in DETOXIFY_COLUMNS:
                    out[DETOXIFY_COLUMNS[cls]][start : start + len(batch)] = probs[:, j]
        return out
