"""DataComp shards: the metadata parquet and its .npz of embedding arrays (b32_img, b32_txt,
l14_img, ...), each 2-D array losing the same rows as the metadata. Members are streamed a slice
of rows at a time and written with the compression they had (np.savez or np.savez_compressed)."""

from __future__ import annotations

import zipfile

from audit.apply_removals.npy_rows import filter_npy
from audit.apply_removals.outputs import Opener, Staging, copy_stream
from audit.apply_removals.parquet_rows import Filtered, filter_parquet
from audit.apply_removals.plan import ShardJob
from audit.errors import InputFileError


def clean_datacomp_shard(job: ShardJob, staging: Staging, open_src: Opener) -> Filtered:
    meta_out = staging.file(job.targets["main"])
    with open_src(job.sources["main"]) as src, meta_out.open() as dst:
        done = filter_parquet(src, dst, job.drop, job.keys, shard_id=job.record.shard_id,
                              source=job.sources["main"], fmt="datacomp")  # fmt: skip
    url = job.sources["npz"]
    npz_out = staging.file(job.targets["npz"])
    with open_src(url) as src, npz_out.open() as dst:
        try:
            zin = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputFileError(f"{url}: not a readable .npz file ({e})") from None
        with zin, zipfile.ZipFile(dst, "w") as zout:
            for info in zin.infolist():
                member = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                member.compress_type = info.compress_type
                with zin.open(info) as m_in, zout.open(member, "w", force_zip64=True) as m_out:
                    if info.filename.endswith(".npy"):
                        filter_npy(m_in, m_out, job.drop, f"{url}:{info.filename}")
                    else:
                        copy_stream(m_in, m_out)
    return done
