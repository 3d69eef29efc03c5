from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from audit.clip_model import load_clip
from audit.concepts import ConceptProbes, load_concept_bank, reportable
from audit.config import ClipSettings
from audit.errors import ConfigError
from audit.stages.concept_probes import score_concepts


@pytest.fixture(scope="module")
def probes(tiny_clip_dir: Path) -> ConceptProbes:
    clip = load_clip(ClipSettings(model=f"local-dir:{tiny_clip_dir}", pretrained=None), "cpu")
    return ConceptProbes.build(load_concept_bank("concepts"), clip.encode_texts)


def test_packaged_bank_covers_the_required_concepts() -> None:
    bank = load_concept_bank("concepts")
    ids = {c.id for c in bank.concepts}
    assert {"sexual", "violence", "hate_symbols", "minors"} <= ids
    assert sum(c.group == "identity" for c in bank.concepts) >= 6
    assert next(c for c in bank.concepts if c.id == "minors").combination_only
    assert len(bank.sha256) == 64


def test_an_embedding_at_a_concept_is_a_hit_of_that_concept(probes: ConceptProbes) -> None:
    k = probes.ids.index("violence")
    scores, hits = probes.score(probes.matrix[[k]])
    assert scores[0, k] == pytest.approx(1.0, abs=1e-5)
    assert hits[0, k]
    hit_lists, _ = probes.describe(scores, hits)
    assert hit_lists[0][0] == "violence"  # best first


def test_negative_prompts_veto_a_hit(probes: ConceptProbes) -> None:
    k = probes.ids.index("sexual")
    negative = probes.negatives[k][:1]  # an image exactly like a negative prompt
    _, hits = probes.score(negative)
    assert not hits[0, k]


def test_identity_top_is_the_closest_identity_probe(probes: ConceptProbes) -> None:
    k = probes.ids.index("identity:asian-woman")
    scores, hits = probes.score(probes.matrix[[k]])
    _, identity_top = probes.describe(scores, hits)
    assert identity_top == ["identity:asian-woman"]


def test_combination_only_concepts_are_not_reportable_alone() -> None:
    assert reportable(["minors", "sexual"], load_concept_bank("concepts")) == ["sexual"]


def test_stage_keeps_rows_and_leaves_rows_without_embedding_null(probes: ConceptProbes) -> None:
    emb = pa.array([probes.matrix[0].tolist(), None], pa.list_(pa.float32()))
    out = score_concepts(pa.table({"image_embedding": emb}), probes=probes)
    assert out.num_rows == 2
    assert dict(out.column("concept_scores")[0].as_py())[probes.ids[0]] == pytest.approx(1.0, abs=1e-5)
    assert out.column("concept_hits").to_pylist()[1] is None


def test_invalid_bank_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text("version: 1\nname: b\nconcepts:\n  - {id: x, prompts: [a]}\n")
    with pytest.raises(ConfigError, match=r"field 'concepts\.0\.threshold'"):
        load_concept_bank(str(path))
