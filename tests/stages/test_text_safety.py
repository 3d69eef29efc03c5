from __future__ import annotations

import pyarrow as pa
import pytest

from audit.config import TextSettings
from audit.schemas import INGESTED_SCHEMA
from audit.stages.text_safety import TextSafetyConfig, score_text_safety
from audit.text_scorers import load_text_scorers


def _table(captions: list[str | None], quarantined: list[str | None]) -> pa.Table:
    n = len(captions)
    cols = {f.name: pa.nulls(n, f.type) for f in INGESTED_SCHEMA}
    cols.update(
        key=pa.array([f"k{i}" for i in range(n)]),
        shard_id=pa.array(["s"] * n),
        row_index=pa.array(range(n), pa.int64()),
        caption=pa.array(captions, pa.string()),
        quarantine_reason=pa.array(quarantined, pa.string()),
    )
    return pa.table([cols[f.name] for f in INGESTED_SCHEMA], schema=INGESTED_SCHEMA)


@pytest.fixture(scope="module")
def scorers():
    return load_text_scorers(TextSettings(scorers=("profanity_check", "hatesonar")))


def test_score_text_safety_keeps_row_count_and_ranks_offensive_higher(scorers) -> None:
    captions = ["a cup of coffee on a saucer", "what a dumb bitch", "white trash redneck hillbilly", "", None]
    table = _table(captions, [None, None, None, None, "caption_missing"])
    out = score_text_safety(table, TextSafetyConfig(batch_size=2), scorers=scorers)
    assert out.num_rows == 5
    offensive = out.column("text_offensive_prob").to_pylist()
    hate = out.column("text_hate_prob").to_pylist()
    assert offensive[1] > 0.9 > offensive[0]
    assert hate[2] > hate[0]
    assert offensive[4] is None and hate[4] is None  # quarantined rows get no score
    assert offensive[3] is not None  # an empty caption is a caption


def test_hostile_text_never_crashes_a_scorer(scorers) -> None:
    captions = [
        "x" * 100_000,
        "🔥🔥 emoji only 🔥",
        "مرحبا بالعالم",
        "zero\u200bwidth\u200djoiner",
        "\x00\x01 control",
    ]
    out = score_text_safety(_table(captions, [None] * 5), TextSafetyConfig(), scorers=scorers)
    for name in ("text_offensive_prob", "text_hate_prob", "text_sonar_offensive_prob"):
        values = out.column(name).to_pylist()
        assert all(v is not None and 0.0 <= v <= 1.0 for v in values), name


def test_every_scorer_records_its_model_and_version(scorers) -> None:
    assert {s.record.name for s in scorers} == {"alt-profanity-check", "hatesonar"}
    assert all(s.record.version not in (None, "unknown") for s in scorers)


def test_list_columns_land_on_their_rows_and_unscored_rows_get_null() -> None:
    lexicon_and_pii = load_text_scorers(TextSettings(scorers=("lexicon", "pii")))
    captions = [None, "mail bob@example.com", "a kike and a faggot", "plain text", None, "call 555-867-5309"]
    quarantined = [None, None, "image_undecodable", None, "caption_missing", None]
    table = _table(captions, quarantined)
    problem = pa.array(["caption_missing", None, None, None, "caption_missing", None], pa.string())
    table = table.set_column(table.schema.get_field_index("caption_problem"), "caption_problem", problem)
    out = score_text_safety(table, TextSafetyConfig(batch_size=2), scorers=lexicon_and_pii)
    scored = [1, 3, 5]  # row 0: no caption (an image-only row); rows 2 and 4: quarantined
    for scorer in lexicon_and_pii:
        want = scorer.score([captions[i] for i in scored])
        for name in scorer.columns:
            got = out.column(name).to_pylist()
            expected = [None] * len(captions)
            for j, i in enumerate(scored):
                v = want[name][j]
                expected[i] = v.item() if hasattr(v, "item") else v
            assert got == expected, name
    assert out.column("pii_types").to_pylist()[1] and out.column("lexicon_terms").to_pylist()[2] is None
