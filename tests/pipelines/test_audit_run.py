"""End-to-end audits on a real Dask LocalCluster over the real sample corpus."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.errors import ShardsFailedError
from audit.pipelines.audit_run import run_audit
from audit.sample import planted_cases
from audit.schemas import (
    CLIP_RANDOM_WARNING,
    FLAGS_SCHEMA,
    QUARANTINE_SCHEMA,
    SCORES_SCHEMA,
    Manifest,
    Summary,
)

pytestmark = pytest.mark.slow


def _flags(run: Path) -> dict[str, list[str]]:
    t = pq.read_table(run / "flags.parquet")
    return dict(zip(t.column("key").to_pylist(), t.column("reasons").to_pylist(), strict=True))


def test_sample_run_folder_has_every_output_and_the_row_invariant(sample_run: Path) -> None:
    for name in ("flags.parquet", "quarantine.parquet", "summary.json", "manifest.json"):
        assert (sample_run / name).is_file(), name
    scores = sorted((sample_run / "scores").glob("*.parquet"))
    assert [p.stem for p in scores] == ["00000", "00001", "00002"]
    summary = Summary.model_validate_json((sample_run / "summary.json").read_text())
    scored = sum(pq.read_table(p).num_rows for p in scores)
    quarantined = pq.read_table(sample_run / "quarantine.parquet").num_rows
    assert summary.rows_in == scored + quarantined == sum(len(v) for v in planted_cases().values())
    assert (summary.rows_scored, summary.rows_quarantined) == (scored, quarantined)
    assert pq.read_schema(scores[0]).names == SCORES_SCHEMA.names
    assert pq.read_schema(sample_run / "flags.parquet").names == FLAGS_SCHEMA.names
    assert pq.read_schema(sample_run / "quarantine.parquet").names == QUARANTINE_SCHEMA.names


def test_sample_run_flags_planted_captions_and_quarantines_malformed_rows(sample_run: Path) -> None:
    planted = planted_cases()
    flags = _flags(sample_run)
    for key in planted["offensive"]:
        assert "offensive-caption" in flags[key], key
    for key in planted["hateful"]:
        assert "hateful-caption" in flags[key], key
    for case, reason in (
        ("lexicon_sexual", "sexual-terms"),
        ("lexicon_violence", "violent-terms"),
        ("pii", "pii"),
    ):
        for key in planted[case]:
            assert reason in flags[key], (case, key)
    # benign photos and captions: nothing but (meaningless, here skipped) CLIP rules may fire
    for key in planted["matching"] + planted["generated"] + planted["near_duplicate"]:
        assert key not in flags, (key, flags.get(key))
    # only rows with neither a usable image nor a usable caption are quarantined (and the known-bad
    # undecodable one, which is flagged all the same)
    q = pq.read_table(sample_run / "quarantine.parquet")
    got = dict(zip(q.column("key").to_pylist(), q.column("reason").to_pylist(), strict=True))
    expected = {
        k: case.split(":", 1)[1]
        for case, keys in planted.items()
        if case.startswith("unscorable:")
        for k in keys
    }
    assert got == {**expected, "known-bad-undecodable": "image_undecodable"}
    # a row with one unusable side is audited on the other, its problem recorded
    scores = pa.concat_tables(pq.read_table(p) for p in sorted((sample_run / "scores").glob("*.parquet")))
    problem = {
        k: c or i
        for k, c, i in zip(
            scores.column("key").to_pylist(),
            scores.column("caption_problem").to_pylist(),
            scores.column("image_problem").to_pylist(),
            strict=True,
        )
    }
    for case, keys in planted.items():
        if case.startswith("malformed:"):
            for k in keys:
                assert problem[k] == case.split(":", 1)[1], k
    summary = Summary.model_validate_json((sample_run / "summary.json").read_text())
    image_only = sum(1 for v in scores.column("caption_problem").to_pylist() if v)
    assert summary.rows_image_only == image_only >= 3  # null, latin-1 and known-bad-no-caption rows


def test_known_bad_matches_are_critical_and_never_rendered(sample_run: Path) -> None:
    flags = pq.read_table(sample_run / "flags.parquet").to_pylist()
    by_key = {f["key"]: f for f in flags}
    for key in planted_cases()["known_bad"]:  # with or without caption, decodable or not
        assert by_key[key]["reasons"] == ["known-bad-hash"]
        assert by_key[key]["severity"] == "critical" and by_key[key]["render_blocked"] is True
    assert flags[0]["severity"] == "critical"  # flags are ordered most severe first
    assert not any(f["render_blocked"] for f in flags if f["key"] not in planted_cases()["known_bad"])


def test_random_clip_weights_are_said_plainly(sample_run: Path) -> None:
    summary = json.loads((sample_run / "summary.json").read_text())
    assert summary["clip_meaningful"] is False and summary["clip_weights"] == "random"
    assert CLIP_RANDOM_WARNING in summary["warnings"]
    assert "image-text-mismatch" in summary["skipped_rules"]
    flags = pq.read_table(sample_run / "flags.parquet")
    assert not any(flags.column("clip_meaningful").to_pylist())
    assert "image-text-mismatch" not in {r for rs in flags.column("reasons").to_pylist() for r in rs}


def test_manifest_records_config_models_and_input_checksums(sample_run: Path) -> None:
    manifest = Manifest.model_validate_json((sample_run / "manifest.json").read_text())
    assert manifest.status == "complete" and len(manifest.config_hash) == 16
    assert manifest.models["clip"].weights == "random"
    assert {"hatesonar", "profanity_check"} <= set(manifest.models)
    assert manifest.versions["torch"].startswith("2.14")
    for shard in manifest.shards:
        assert shard.status == "done"
        assert shard.sha256 == hashlib.sha256(Path(shard.path).read_bytes()).hexdigest()
    assert len({s.worker for s in manifest.shards}) >= 1 and manifest.kernel_backends


def test_rerun_skips_finished_shards_and_reproduces_outputs(
    sample_dir: Path, make_config, tmp_path: Path
) -> None:
    cfg = make_config(shards=[str(sample_dir / "parquet")], out=str(tmp_path / "run"))
    run_audit(cfg)
    first_flags = pq.read_table(tmp_path / "run" / "flags.parquet")
    record = tmp_path / "run" / "shards" / "00000.json"
    stamp = record.stat().st_mtime_ns
    summary = run_audit(cfg)
    assert record.stat().st_mtime_ns == stamp  # not audited again
    assert pq.read_table(tmp_path / "run" / "flags.parquet").equals(first_flags)
    assert summary.rows_in == summary.rows_scored + summary.rows_quarantined


def test_meaningful_clip_evaluates_the_mismatch_rule(sample_dir: Path, make_config, tmp_path: Path) -> None:
    cfg = make_config(shards=[str(sample_dir / "parquet" / "00000.parquet")], out=str(tmp_path / "run"))
    summary = run_audit(cfg)
    assert summary.clip_meaningful and summary.clip_weights == "file"
    assert summary.skipped_rules == {} and not summary.warnings
    scores = pq.read_table(tmp_path / "run" / "scores" / "00000.parquet")
    low = {
        k
        for k, s in zip(
            scores.column("key").to_pylist(), scores.column("clip_similarity").to_pylist(), strict=True
        )
        if s is not None and s < 0.28
    }
    mismatched = {k for k, r in _flags(tmp_path / "run").items() if "image-text-mismatch" in r}
    assert mismatched == low


def test_metadata_only_shard_is_audited_text_only(sample_dir: Path, make_config, tmp_path: Path) -> None:
    cfg = make_config(shards=[str(sample_dir / "laion_metadata")], out=str(tmp_path / "run"))
    summary = run_audit(cfg)
    assert set(summary.image_status) == {"absent"}
    flags = _flags(tmp_path / "run")
    assert "source-nsfw" in flags[_key_of(sample_dir, "offensive-0")]


def _key_of(sample_dir: Path, planted_key: str) -> str:
    """LAION metadata rows are keyed by SAMPLE_ID; find the one built from a planted row."""
    t = pq.read_table(sample_dir / "laion_metadata" / "part-00000.parquet")
    urls = t.column("URL").to_pylist()
    idx = next(i for i, u in enumerate(urls) if u.endswith(f"/{planted_key}.jpg"))
    return str(t.column("SAMPLE_ID")[idx].as_py())


def test_precomputed_embeddings_audit_without_images(tmp_path: Path, make_config) -> None:
    root = tmp_path / "emb"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "img_emb" / "img_emb_0.npy", rng.normal(size=(4, 32)).astype(np.float16))
    np.save(root / "text_emb" / "text_emb_0.npy", rng.normal(size=(4, 32)).astype(np.float16))
    captions = ["a dog", "what a dumb bitch", "a cat", "a bird", "a fish"]
    pq.write_table(
        pa.table({"caption": captions, "url": [f"u{i}" for i in range(5)]}),
        root / "metadata" / "metadata_0.parquet",
    )
    summary = run_audit(make_config(shards=[str(root)], out=str(tmp_path / "run")))
    assert (summary.rows_in, summary.rows_scored, summary.rows_quarantined) == (5, 4, 1)
    assert summary.quarantine_by_reason == {"embedding_missing": 1}
    assert summary.image_status == {"precomputed": 4}
    assert any("4 embedding rows for 5 metadata rows" in w for w in summary.warnings)
    assert "offensive-caption" in _flags(tmp_path / "run")["metadata_0:1"]


def test_a_broken_shard_fails_alone_and_the_run_says_so(
    sample_dir: Path, make_config, tmp_path: Path
) -> None:
    shards = tmp_path / "in"
    shutil.copytree(sample_dir / "parquet", shards)
    # damage past the first block: validation (first header) passes, reading the shard fails
    (shards / "zz.tar").write_bytes(b"\x00" * 512 + b"not a tar".ljust(512, b"x"))
    with pytest.raises(ShardsFailedError, match=r"1 of 3 shards failed .*zz\.tar"):
        run_audit(make_config(shards=[str(shards)], out=str(tmp_path / "run")))
    summary = Summary.model_validate_json((tmp_path / "run" / "summary.json").read_text())
    assert summary.status == "partial" and summary.shards_done == 2 and summary.shards_failed == 1
    record = json.loads((tmp_path / "run" / "shards" / "zz.json").read_text())
    assert record["status"] == "failed" and "not a readable tar" in record["error"]


def _emb_folder(root: Path, dim: int, model: str | None = None) -> Path:
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "img_emb" / "img_emb_0.npy", rng.normal(size=(2, dim)).astype(np.float16))
    np.save(root / "text_emb" / "text_emb_0.npy", rng.normal(size=(2, dim)).astype(np.float16))
    pq.write_table(pa.table({"caption": ["a", "b"]}), root / "metadata" / "metadata_0.parquet")
    if model:
        (root / "embeddings.json").write_text(json.dumps({"model": model}))
    return root


def test_precomputed_embeddings_of_another_dimension_stop_the_run(tmp_path: Path, make_config) -> None:
    from audit.errors import EmbeddingMismatchError

    root = _emb_folder(tmp_path / "emb", dim=768)
    with pytest.raises(EmbeddingMismatchError, match=r"are 768-d, but clip\.model .* makes 32-d"):
        run_audit(make_config(shards=[str(root)], out=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_precomputed_embeddings_from_another_model_name_the_model(tmp_path: Path, make_config) -> None:
    from audit.errors import EmbeddingMismatchError

    root = _emb_folder(tmp_path / "emb", dim=32, model="ViT-L-14")
    with pytest.raises(EmbeddingMismatchError, match="come from ViT-L-14"):
        run_audit(make_config(shards=[str(root)], out=str(tmp_path / "run")))
