"""PDQ, Meta's 256-bit perceptual hash (the one ThreatExchange and StopNCII share), and matching
against lists of up to millions of hashes within a Hamming distance.

Hex strings follow ThreatExchange (64 hex digits, most significant bit first), so a hash printed by
Meta's ``pdq-photo-hasher`` matches the one computed here for the same pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata

import numpy as np
from PIL import Image

PDQ_BITS = 256
PDQ_HEX_DIGITS = PDQ_BITS // 4
# The PDQ authors' recommended match threshold (ThreatExchange hashing/pdq README): at most 31 of
# 256 bits differ.
DEFAULT_PDQ_MAX_DISTANCE = 31
# Hashes of flat or featureless images (quality under 50) match nearly anything: the authors
# recommend not matching on them.
DEFAULT_PDQ_MIN_QUALITY = 50
# PDQ downsamples to 64x64 anyway; hashing a bounded copy keeps the cost per image fixed.
_MAX_SIDE = 512


def pdq_version() -> str:
    return metadata.version("pdqhash")


def pdq_hash(image: Image.Image) -> tuple[str, int]:
    """(64-digit hex hash, quality 0..100) of an image's pixels."""
    import pdqhash

    rgb = image.convert("RGB")
    if max(rgb.size) > _MAX_SIDE:
        rgb = rgb.copy()
        rgb.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.BILINEAR)
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)


def hex_to_bytes(hashes: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8 rows of 64-digit hex hashes."""
    if not hashes:
        return np.zeros((0, PDQ_BITS // 8), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), np.uint8).reshape(len(hashes), PDQ_BITS // 8)


class PdqIndex:
    """Exact search for the closest listed PDQ hash within ``max_distance`` bits, a batch of queries
    at a time, never a Python loop over the list.

    Large lists use multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012): the 256 bits are
    cut into 16 chunks of 16 bits, and by the pigeonhole principle a hash within ``max_distance``
    of a query agrees with it on some chunk up to ``max_distance // 16`` flipped bits. So each query
    looks up 16 x (1 + 16) buckets (17 probes per chunk for the default 31) and computes the full
    distance only for the few hashes found there, instead of for every hash in the list. Small
    lists, and thresholds of 48 bits or more, go to a FAISS binary index (exact Hamming distance with
    SIMD popcounts over every listed hash).
    """

    CHUNKS = 16
    MIN_MIH_SIZE = 1 << 16  # under this a flat scan is as fast
    QUERY_BATCH = 64  # queries whose candidate pairs are gathered at once (bounds memory)

    def __init__(self, hashes: Sequence[str], max_distance: int = DEFAULT_PDQ_MAX_DISTANCE) -> None:
        self._codes = hex_to_bytes(hashes)  # checked here: a malformed list fails when it is loaded
        self.max_distance = max_distance
        self._n = len(self._codes)
        flips = max_distance // self.CHUNKS
        self.mode = "mih" if self._n >= self.MIN_MIH_SIZE and flips <= 2 else "flat"
        self._built = False
        self._lock = threading.Lock()  # a worker with several threads shares its models

    def _build(self) -> None:
        """The search structures, on the first query: a worker whose rows have no image bytes (text
        only, precomputed embeddings) never builds them, nor imports FAISS."""
        with self._lock:
            if not self._built:
                self._build_now()
                self._built = True

    def _build_now(self) -> None:
        codes = self._codes
        if self.mode == "flat":
            import faiss

            self._flat = faiss.IndexBinaryFlat(PDQ_BITS)
            if self._n:
                self._flat.add(codes)
            return
        self._words = np.ascontiguousarray(codes).view(np.uint64)  # (n, 4): distances by popcount
        chunks = np.ascontiguousarray(codes).view(np.uint16)  # (n, 16)
        self._order: list[np.ndarray] = []
        self._starts: list[np.ndarray] = []
        for j in range(self.CHUNKS):
            order = np.argsort(chunks[:, j], kind="stable").astype(np.int32)
            counts = np.bincount(chunks[order, j], minlength=1 << 16)
            self._order.append(order)
            self._starts.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        self._probes = _flip_masks(self.max_distance // self.CHUNKS)

    def __len__(self) -> int:
        return self._n

    def nearest(self, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(distance, list position) of the closest listed hash within ``max_distance`` of each
        query; (-1, -1) where none is that close."""
        n = len(hashes)
        dist = np.full(n, -1, np.int32)
        pos = np.full(n, -1, np.int64)
        if not n or not self._n:
            return dist, pos
        queries = hex_to_bytes(hashes)
        if not self._built:
            self._build()
        if self.mode == "flat":
            d, p = self._flat.search(queries, 1)
            hit = d[:, 0] <= self.max_distance
            dist[hit], pos[hit] = d[hit, 0], p[hit, 0]
            return dist, pos
        for s in range(0, n, self.QUERY_BATCH):
            d, p = self._search(queries[s : s + self.QUERY_BATCH])
            dist[s : s + len(d)], pos[s : s + len(p)] = d, p
        return dist, pos

    def _search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = len(queries)
        chunks = np.ascontiguousarray(queries).view(np.uint16)  # (q, 16)
        owners, candidates = [], []
        for j in range(self.CHUNKS):
            probes = (chunks[:, j, None] ^ self._probes[None, :]).ravel()  # (q * probes,)
            lo, hi = self._starts[j][probes], self._starts[j][probes.astype(np.int64) + 1]
            lengths = hi - lo
            total = int(lengths.sum())
            if not total:
                continue
            # every position lo..hi-1 of every probe, as one flat array
            offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            candidates.append(self._order[j][np.arange(total) + offsets])
            owners.append(np.repeat(np.arange(q).repeat(len(self._probes)), lengths))
        dist = np.full(q, -1, np.int32)
        pos = np.full(q, -1, np.int64)
        if not candidates:
            return dist, pos
        owner = np.concatenate(owners)
        cand = np.concatenate(candidates)
        qwords = np.ascontiguousarray(queries).view(np.uint64)
        d = np.bitwise_count(self._words[cand] ^ qwords[owner]).sum(axis=1).astype(np.int32)
        keep = d <= self.max_distance
        owner, cand, d = owner[keep], cand[keep], d[keep]
        # closest per query (ties: the earliest listed hash)
        order = np.lexsort((cand, d, owner))
        owner, cand, d = owner[order], cand[order], d[order]
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, np.int64)
        dist[owner[first]], pos[owner[first]] = d[first], cand[first]
        return dist, pos


def _flip_masks(flips: int) -> np.ndarray:
    """Every 16-bit mask with at most ``flips`` bits set (0, the 16 single bits, the 120 pairs)."""
    from itertools import combinations

    masks = [0]
    for k in range(1, flips + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(16), k)]
    return np.asarray(masks, np.uint16)
