"""Match image bytes and pixels against known-bad hash lists."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pyarrow as pa

from audit.hashlists import HashMatch, KnownBadLists, phash_hex
from audit.images import DecodedImage, as_pil
from audit.pdq import DEFAULT_PDQ_MIN_QUALITY, pdq_hash
from audit.tables import set_columns

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
    raw = table.column("image").to_pylist()
    sha = table.column("sha256").to_pylist()
    phash: list[str | None] = [None] * n
    pdq: list[str | None] = [None] * n
    quality: list[int | None] = [None] * n
    matched: list[bool | None] = [None] * n
    which: list[str | None] = [None] * n
    distance: list[int | None] = [None] * n
    for i in range(n):
        if not raw[i]:
            # no bytes (precomputed embeddings, metadata only): the dataset's SHA-256 can still match
            if sha[i] and len(lists):
                hit = lists.match_sha256(sha[i])
                matched[i] = True if hit else None
                if hit:
                    which[i], distance[i] = _describe(hit), 0
            continue
        # the bytes' own digest, not the dataset's claim: what an authority or a removal list
        # acting on the image needs (the dataset's value is still matched, in lists.match)
        claimed, sha[i] = sha[i], hashlib.sha256(raw[i]).hexdigest()
        decoded = images.get(i)
        pixels = as_pil(decoded) if decoded is not None else None
        if pixels is not None:
            pdq[i], quality[i] = pdq_hash(pixels)
        if not len(lists):
            phash[i], matched[i] = phash_hex(pixels), False
            continue
        hit, phash[i] = lists.match(raw[i], claimed, pixels)
        matched[i] = hit is not None
        if hit:
            which[i], distance[i] = _describe(hit), hit.distance
    # PDQ: one batched query against the list for every image not matched exactly or by pHash
    ask = [i for i in range(n) if pdq[i] and not matched[i] and (quality[i] or 0) >= pdq_min_quality]
    if ask and lists.pdq_count:
        for i, hit in zip(ask, lists.match_pdq([pdq[i] for i in ask]), strict=True):
            if hit is not None:
                matched[i], which[i], distance[i] = True, _describe(hit), hit.distance
    return set_columns(
        table,
        {
            "image_phash": pa.array(phash, pa.string()),
            "image_pdq": pa.array(pdq, pa.string()),
            "image_pdq_quality": pa.array(quality, pa.int32()),
            "known_bad_match": pa.array(matched, pa.bool_()),
            "known_bad_list": pa.array(which, pa.string()),
            "known_bad_distance": pa.array(distance, pa.int32()),
            "sha256": pa.array(sha, pa.string()),
        },
    )
