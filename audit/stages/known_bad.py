"""Match image bytes and pixels against known-bad hash lists."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from audit.hashlists import HashMatch, KnownBadLists, phash_hex
from audit.images import DecodedImage, as_pil
from audit.pdq import DEFAULT_PDQ_MIN_QUALITY, pdq_hash
from audit.tables import scatter_array, set_columns

OUTPUT_COLUMNS = (
    "image_phash",
    "image_pdq",
    "image_pdq_quality",
    "known_bad_match",
    "known_bad_list",
    "known_bad_distance",
)


def _describe(hit: HashMatch) -> str:
    return f"{hit.list_name}:{hit.algorithm}" + (f":{hit.label}" if hit.label else "")


def match_known_bad(
    table: pa.Table,
    *,
    lists: KnownBadLists,
    images: Mapping[int, DecodedImage],
    pdq_min_quality: int = DEFAULT_PDQ_MIN_QUALITY,
) -> pa.Table:
    """Adds the pHash and PDQ hash of every decoded image and, where a list matches, which one and
    how closely.

    Runs on every row, quarantined or not: exact hashes need only the bytes (or the dataset's
    sha256), perceptual hashes only a decodable image, so a known-bad image is matched whatever
    else is wrong with its row. Rows without image bytes or sha256 get null (unknown), never False.
    PDQ hashes whose quality is under ``pdq_min_quality`` are recorded but not matched (the PDQ
    authors' advice: featureless images collide).
    """
    n = table.num_rows
    claimed_sha = table.column("sha256").combine_chunks().cast(pa.string())
    has_bytes = pc.fill_null(pc.greater(pc.binary_length(table.column("image").combine_chunks()), 0), False)
    has_sha = pc.fill_null(pc.greater(pc.binary_length(claimed_sha), 0), False)
    # only rows with bytes, or a dataset sha256 to look up, have anything to match: the others
    # (metadata and precomputed rows, most of a corpus) get nulls without a Python step each
    wanted = pc.or_(has_bytes, has_sha) if len(lists) else has_bytes
    rows = np.flatnonzero(wanted.to_numpy(zero_copy_only=False))
    at = pa.array(rows, pa.int64())
    raw = table.column("image").take(at).to_pylist()
    sha = claimed_sha.take(at).to_pylist()
    k = len(rows)
    phash: list[str | None] = [None] * k
    pdq: list[str | None] = [None] * k
    quality: list[int | None] = [None] * k
    matched: list[bool | None] = [None] * k
    which: list[str | None] = [None] * k
    distance: list[int | None] = [None] * k
    for j, i in enumerate(rows.tolist()):
        if not raw[j]:
            # no bytes (precomputed embeddings, metadata only): the dataset's SHA-256 can still match
            hit = lists.match_sha256(sha[j])
            matched[j] = True if hit else None
            if hit:
                which[j], distance[j] = _describe(hit), 0
            continue
        # the bytes' own digest, not the dataset's claim: what an authority or a removal list
        # acting on the image needs (the dataset's value is still matched, in lists.match)
        claimed, sha[j] = sha[j], hashlib.sha256(raw[j]).hexdigest()
        decoded = images.get(i)
        pixels = as_pil(decoded) if decoded is not None else None
        if pixels is not None:
            pdq[j], quality[j] = pdq_hash(pixels)
        if not len(lists):
            phash[j], matched[j] = phash_hex(pixels), False
            continue
        hit, phash[j] = lists.match(raw[j], claimed, pixels)
        matched[j] = hit is not None
        if hit:
            which[j], distance[j] = _describe(hit), hit.distance
    # PDQ: one batched query against the list for every image not matched exactly or by pHash
    ask = [j for j in range(k) if pdq[j] and not matched[j] and (quality[j] or 0) >= pdq_min_quality]
    if ask and lists.pdq_count:
        for j, hit in zip(ask, lists.match_pdq([pdq[j] for j in ask]), strict=True):
            if hit is not None:
                matched[j], which[j], distance[j] = True, _describe(hit), hit.distance

    def spread(values: list, typ: pa.DataType) -> pa.Array:
        return scatter_array(n, rows, pa.array(values, typ))

    return set_columns(
        table,
        {
            "image_phash": spread(phash, pa.string()),
            "image_pdq": spread(pdq, pa.string()),
            "image_pdq_quality": spread(quality, pa.int32()),
            "known_bad_match": spread(matched, pa.bool_()),
            "known_bad_list": spread(which, pa.string()),
            "known_bad_distance": spread(distance, pa.int32()),
            # the bytes' digest where there were bytes, the dataset's value elsewhere
            "sha256": pc.if_else(wanted, spread(sha, pa.string()), claimed_sha),
        },
    )
