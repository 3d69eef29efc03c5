"""NudeNet with the real 320n.onnx shipped in the nudenet wheel: the same detections as the
package's own detector, per-group scores, the stage's nulls, and the rules (alone and joined with
the caption side) on real score tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
from PIL import Image

from audit.nudenet_scorer import GROUPS, LABELS, NudeNetScorer, model_path
from audit.rules import apply_rules, load_rules
from audit.schemas import SCORES_SCHEMA
from audit.stages.nudity import score_nudity
from audit.tables import conform


@pytest.fixture(scope="module")
def scorer() -> NudeNetScorer:
    return NudeNetScorer(intra_op_threads=1)


def _photos() -> list[Image.Image]:
    return [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.chelsea())]


def test_labels_are_the_models_own_in_output_order() -> None:
    import ast

    import nudenet.nudenet
    import onnx

    names = ast.literal_eval(
        next(p.value for p in onnx.load(str(model_path())).metadata_props if p.key == "names")
    )
    assert tuple(names[i] for i in range(len(names))) == LABELS == tuple(nudenet.nudenet.__dict__["__labels"])


def test_detections_match_the_packages_own_detector(scorer: NudeNetScorer, tmp_path) -> None:
    from nudenet import NudeDetector

    package = NudeDetector()
    for i, image in enumerate(_photos()):
        path = tmp_path / f"{i}.png"
        image.save(path)
        theirs = {d["class"]: d["score"] for d in package.detect(str(path))}
        ours = {d.label: d.score for d in scorer.detect([image])[0]}
        assert set(ours) == set(theirs), (i, ours, theirs)
        for label, score in ours.items():  # bilinear resize in PIL vs OpenCV: close, not equal
            assert abs(score - theirs[label]) < 0.1


def test_group_scores_counts_and_classes_per_image(scorer: NudeNetScorer) -> None:
    out = scorer.score(_photos())
    astronaut = dict(out["nudenet_class_max"][0])
    assert astronaut.get("FACE_FEMALE", 0) > 0.5  # Eileen Collins' portrait
    assert dict(out["nudenet_class_counts"][0])["FACE_FEMALE"] == 1
    for group in (*GROUPS, "nudenet_exposed_max"):
        assert out[group][0] == 0.0 and out[group][1] == 0.0  # a portrait and a cat: nothing exposed
    assert out["nudenet_exposed_count"] == [0, 0]


def test_batches_give_the_same_detections_as_single_images(scorer: NudeNetScorer) -> None:
    photos = _photos()
    batched = scorer.detect(photos)
    single = [scorer.detect([p])[0] for p in photos]
    assert [[d.label for d in x] for x in batched] == [[d.label for d in x] for x in single]
    assert np.allclose([d.score for x in batched for d in x], [d.score for x in single for d in x], atol=1e-4)


def test_stage_scores_decoded_images_and_leaves_the_rest_null(scorer: NudeNetScorer) -> None:
    table = pa.table({"quarantine_reason": pa.array([None, None, "image_empty"], pa.string())})
    photos = _photos()
    out = score_nudity(table, model=scorer, images={0: photos[0], 2: photos[1]}).to_pydict()
    assert out["nudenet_exposed_max"] == [0.0, None, None]  # row 1: no image; row 2: quarantined
    assert out["nudenet_class_max"][1] is None and out["nudenet_exposed_count"][2] is None


def test_model_record_names_the_file_and_its_checksum(scorer: NudeNetScorer) -> None:
    import hashlib

    assert scorer.record.name == "nudenet-320n" and scorer.record.version == "3.4.2"
    assert scorer.record.sha256 == hashlib.sha256(model_path().read_bytes()).hexdigest()
    assert scorer.provider == "CPUExecutionProvider"


def _scores(rows: list[dict]) -> pa.Table:
    base = {"row_id": "s:0", "key": "k", "shard_id": "s", "row_index": 0}
    names = {k for r in rows for k in r}  # from_pylist reads the first row's keys only
    return conform(pa.Table.from_pylist([{**base, **dict.fromkeys(names), **r} for r in rows]), SCORES_SCHEMA)


def test_rules_on_nudenet_scores_alone_and_joined_with_the_caption() -> None:
    rules = load_rules("default")
    table = _scores(
        [
            {"nudenet_genitalia_exposed": 0.9, "nudenet_exposed_max": 0.9},  # alone: high
            {"nudenet_breast_exposed": 0.9, "nudenet_exposed_max": 0.9},  # alone: medium
            {"nudenet_buttocks_exposed": 0.6, "nudenet_exposed_max": 0.6, "lexicon_sexual_hits": 1},
            {"nudenet_buttocks_exposed": 0.6, "nudenet_exposed_max": 0.6, "text_offensive_prob": 0.95},
            {"nudenet_buttocks_exposed": 0.6, "nudenet_exposed_max": 0.6},  # neither alone nor joined
            {"nudenet_covered": 0.95, "nudenet_exposed_max": 0.0, "lexicon_sexual_hits": 0},
        ]
    )
    flags = apply_rules(
        table.set_column(0, "row_id", pa.array([f"s:{i}" for i in range(6)])), rules, clip_meaningful=True
    )
    got = {r["row_id"]: (r["rules"], r["severity"]) for r in flags.to_pylist()}
    assert got["s:0"] == (["nudenet-exposed-genitalia"], "high")
    assert got["s:1"] == (["nudenet-exposed-breast-buttocks"], "medium")
    assert got["s:2"][0] == ["sexual-terms", "nudenet-exposed-sexual-caption"] and got["s:2"][1] == "high"
    assert "nudenet-exposed-sexual-caption" in got["s:3"][0]
    assert "s:4" not in got and "s:5" not in got
