"""Text inside images: rapidocr (PP-OCRv6 small detection and recognition, PP-OCR direction
classifier; ONNX models shipped in the rapidocr wheel) through onnxruntime.

The models are named explicitly (never rapidocr's download path), so a run says which files read
its images. Detection works on a copy whose longest side is at most ``max_side`` pixels: the cost
per image is bounded whatever the decoded size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from PIL import Image

from audit.clip_model import file_sha256
from audit.errors import ModelLoadError
from audit.languages import OCR_LANGUAGES
from audit.schemas import ModelRecord

MIN_LINE_ALNUM = 2
MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


@dataclass(frozen=True)
class OcrResult:
    text: str  # the lines read, in reading order, joined by spaces ("" when none)
    confidence: float | None  # mean recognition confidence of the lines (None when none)
    lines: int


def model_dir() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models"


class OcrReader:
    """Reads the text of images one at a time (rapidocr batches the text lines of an image)."""

    name = "ocr"
    languages = OCR_LANGUAGES  # what the recognition model can read
    tier = "expensive"  # seconds per text-heavy image on a CPU: the cascade's expensive tier

    def __init__(
        self,
        *,
        device: str = "cpu",
        threads: int = 1,
        max_side: int = 640,
        min_line_confidence: float = 0.5,
        max_chars: int = 2000,
    ) -> None:
        import onnxruntime as ort
        from rapidocr import RapidOCR

        root = model_dir()
        paths = {k: root / v for k, v in MODEL_FILES.items()}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise ModelLoadError(f"images.ocr: rapidocr's bundled models are missing: {', '.join(missing)}")
        cuda = device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        params = {
            "Global.log_level": "error",
            "Global.text_score": min_line_confidence,
            "Det.model_path": str(paths["det"]),
            "Rec.model_path": str(paths["rec"]),
            "Cls.model_path": str(paths["cls"]),
            "Det.limit_type": "max",
            "Det.limit_side_len": max_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": cuda,
        }
        self._engine = RapidOCR(params=params)
        self.max_side = max_side
        self.max_chars = max_chars
        self.provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
        version = metadata.version("rapidocr")
        self.record = ModelRecord(
            name="rapidocr-PP-OCRv6-small",
            source="rapidocr package (" + ", ".join(MODEL_FILES.values()) + ")",
            weights="package",
            # the recognition model's digest; every file's own digest is in `records`
            sha256=file_sha256(str(paths["rec"])),
            version=version,
        )
        self.records = {
            f"ocr:{part}": ModelRecord(
                name=f"rapidocr-{MODEL_FILES[part].removesuffix('.onnx')}",
                source=f"rapidocr package ({MODEL_FILES[part]})",
                weights="package",
                sha256=file_sha256(str(path)),
                version=version,
            )
            for part, path in paths.items()
        }

    def read(self, images: Sequence[Image.Image]) -> list[OcrResult]:
        out = []
        for image in images:
            rgb = image.convert("RGB")
            if max(rgb.size) > 2 * self.max_side:  # rapidocr resizes again for detection
                rgb = rgb.copy()
                rgb.thumbnail((2 * self.max_side, 2 * self.max_side), Image.Resampling.BILINEAR)
            result = self._engine(rgb)
            # a line needs two letters or digits: shapes read as one glyph ("●", "V") are not text
            kept = [
                (t.strip(), float(sc))
                for t, sc in zip(result.txts or (), result.scores or (), strict=False)
                if t and sum(ch.isalnum() for ch in t) >= MIN_LINE_ALNUM
            ]
            texts = [t for t, _ in kept]
            scores = [sc for _, sc in kept]
            text = " ".join(texts)[: self.max_chars]
            out.append(OcrResult(text, sum(scores) / len(scores) if scores else None, len(texts)))
        return out
