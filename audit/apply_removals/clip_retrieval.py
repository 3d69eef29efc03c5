"""clip-retrieval folders: metadata/metadata_N.parquet with img_emb/img_emb_N.npy and
text_emb/text_emb_N.npy, all three losing the same rows so they stay aligned row for row."""

from __future__ import annotations

from audit.apply_removals.npy_rows import filter_npy
from audit.apply_removals.outputs import Opener, Staging, copy_stream
from audit.apply_removals.parquet_rows import Filtered, filter_parquet
from audit.apply_removals.plan import ShardJob


def clean_clip_retrieval_shard(job: ShardJob, staging: Staging, open_src: Opener) -> Filtered:
    meta_out = staging.file(job.targets["main"])
    with open_src(job.sources["main"]) as src, meta_out.open() as dst:
        done = filter_parquet(src, dst, job.drop, job.keys, shard_id=job.record.shard_id,
                              source=job.sources["main"], fmt="clip_retrieval")  # fmt: skip
    for role in ("img_emb", "txt_emb"):
        out = staging.file(job.targets[role])
        with open_src(job.sources[role]) as src, out.open() as dst:
            filter_npy(src, dst, job.drop, job.sources[role])
    copy_embeddings_json(job, staging, open_src)
    return done


def copy_embeddings_json(job: ShardJob, staging: Staging, open_src: Opener) -> None:
    """The folder's embeddings.json (the model the vectors came from), shared by its shards."""
    if "embeddings_json" in job.sources:
        out = staging.file(job.targets["embeddings_json"])
        with open_src(job.sources["embeddings_json"]) as src, out.open() as dst:
            copy_stream(src, dst)
