"""NudeNet: a YOLOv8 ONNX detector of exposed and covered body parts (``nudenet/320n.onnx``, shipped
in the nudenet wheel), run batched through onnxruntime with the CUDA provider when it has one.

The package's own ``NudeDetector`` ignores the providers it is given and decodes one image at a
time with OpenCV; this runs the same graph with the same pre- and post-processing (letterbox
padding to a square, 320x320, confidence 0.2 before and 0.25 after class-agnostic NMS at IoU 0.45)
on batches of decoded PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from audit.clip_model import file_sha256
from audit.schemas import ModelRecord

# The detector's classes in output order (nudenet.nudenet.__labels; the model's metadata 'names').
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
# Score column -> the classes whose best detection it holds (0.0 when none was detected)
GROUPS: dict[str, tuple[str, ...]] = {
    "nudenet_genitalia_exposed": ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_EXPOSED"),
    "nudenet_breast_exposed": ("FEMALE_BREAST_EXPOSED",),
    "nudenet_buttocks_exposed": ("BUTTOCKS_EXPOSED",),
    "nudenet_covered": (
        "FEMALE_GENITALIA_COVERED",
        "FEMALE_BREAST_COVERED",
        "BUTTOCKS_COVERED",
        "ANUS_COVERED",
    ),
}
EXPOSED = (
    GROUPS["nudenet_genitalia_exposed"]
    + GROUPS["nudenet_breast_exposed"]
    + GROUPS["nudenet_buttocks_exposed"]
)
INPUT_SIZE = 320
CANDIDATE_SCORE = 0.2  # boxes kept before NMS (as nudenet does)
DETECTION_SCORE = 0.25  # NMS score threshold
NMS_IOU = 0.45


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x, y, w, h in the 320x320 letterboxed frame


def model_path() -> Path:
    import nudenet

    return Path(nudenet.__file__).parent / "320n.onnx"


def letterbox(image: Image.Image) -> np.ndarray:
    """CHW float32 in [0, 1]: the image padded with black to a square at the bottom/right, resized
    to 320x320 (bilinear), channels in BGR order. BGR because that is what the package feeds the
    graph (cv2.imread's BGR, swapped by COLOR_RGBA2BGR, swapped back by blobFromImage's swapRB), so
    scores here are the package's scores."""
    rgb = image.convert("RGB")
    side = max(rgb.size)
    square = Image.new("RGB", (side, side), (0, 0, 0))
    square.paste(rgb, (0, 0))
    resized = square.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(resized, np.float32)[:, :, ::-1].transpose(2, 0, 1)) / 255.0


def postprocess(output: np.ndarray) -> list[Detection]:
    """One image's (22, anchors) output -> detections after NMS, best first."""
    import cv2

    rows = output.T  # (anchors, 4 box + 18 class scores)
    scores = rows[:, 4:]
    best = scores.max(axis=1)
    keep = np.flatnonzero(best >= CANDIDATE_SCORE)
    if not keep.size:
        return []
    cls = scores[keep].argmax(axis=1)
    cx, cy, w, h = (rows[keep, j] for j in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    picked = cv2.dnn.NMSBoxes(boxes.tolist(), best[keep].tolist(), DETECTION_SCORE, NMS_IOU)
    out = [
        Detection(LABELS[int(cls[j])], float(best[keep][j]), tuple(float(v) for v in boxes[j]))
        for j in np.asarray(picked, dtype=np.int64).reshape(-1)
    ]
    return sorted(out, key=lambda d: -d.score)


class NudeNetScorer:
    """Per-class detection counts and best confidences, and one score per group of classes."""

    name = "nudenet"
    languages = None  # pixels only
    tier = "expensive"  # a detector at 320x320: for the cascade's expensive tier when there is one

    def __init__(self, device: str = "cpu", intra_op_threads: int | None = None) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        path = model_path()
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.provider = self._session.get_providers()[0]
        self.record = ModelRecord(
            name="nudenet-320n",
            source=f"nudenet package ({path.name})",
            weights="package",
            sha256=file_sha256(str(path)),
            version=metadata.version("nudenet"),
        )

    def detect(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        if not images:
            return []
        batch = np.stack([letterbox(im) for im in images])
        (output,) = self._session.run(None, {self._input: batch})
        return [postprocess(output[j]) for j in range(len(images))]

    def score(self, images: Sequence[Image.Image]) -> dict[str, list]:
        """Column name -> one value per image (see GROUPS and schemas.SCORE_COLUMNS)."""
        found = self.detect(images)
        out: dict[str, list] = {
            c: []
            for c in (
                *GROUPS,
                "nudenet_exposed_max",
                "nudenet_exposed_count",
                "nudenet_class_max",
                "nudenet_class_counts",
            )
        }
        for dets in found:
            best: dict[str, float] = {}
            counts: dict[str, int] = {}
            for d in dets:
                best[d.label] = max(best.get(d.label, 0.0), d.score)
                counts[d.label] = counts.get(d.label, 0) + 1
            for col, labels in GROUPS.items():
                out[col].append(max((best.get(lb, 0.0) for lb in labels), default=0.0))
            out["nudenet_exposed_max"].append(max(best.get(lb, 0.0) for lb in EXPOSED))
            out["nudenet_exposed_count"].append(sum(counts.get(lb, 0) for lb in EXPOSED))
            out["nudenet_class_max"].append(sorted(best.items()))
            out["nudenet_class_counts"].append(sorted(counts.items()))
        return out
