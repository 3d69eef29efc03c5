"""Known-bad hash lists: exact (MD5, SHA-1, SHA-256 of image bytes) and perceptual (pHash, PDQ)
matching. The formats are documented in docs/hash-lists.md:

    algorithm,hash,label
    sha256,9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,ncmec-2026-11
    md5,098f6bcd4621d373cade4e832627b4f6,internal
    phash,d1c4f0e0f0f0e0c1,internal
    pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,stopncii

or a ThreatExchange CSV export (a header with ``td_raw_indicator`` and ``td_indicator_type``).
A match is the highest severity; matched images are never rendered or copied anywhere.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from audit.clip_model import file_sha256
from audit.errors import ConfigError
from audit.pdq import DEFAULT_PDQ_MAX_DISTANCE, PDQ_HEX_DIGITS, PdqIndex

ALGORITHMS = ("md5", "sha1", "sha256", "phash", "pdq")
EXACT = ("md5", "sha1", "sha256")
HEX_DIGITS = {"md5": 32, "sha1": 40, "sha256": 64, "phash": 16, "pdq": PDQ_HEX_DIGITS}
# ThreatExchange indicator types (td_indicator_type) and what they are here
THREATEXCHANGE_TYPES = {"HASH_MD5": "md5", "HASH_SHA1": "sha1", "HASH_SHA256": "sha256", "HASH_PDQ": "pdq"}


@dataclass(frozen=True)
class HashMatch:
    list_name: str
    algorithm: str
    label: str
    distance: int


@dataclass(frozen=True)
class _Entry:
    lineno: int
    algorithm: str
    value: str
    label: str


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their physical line numbers (what a person would open)."""
    return [
        (n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip() and not ln.startswith("#")
    ]


def _entries(path: str, text: str) -> list[_Entry]:
    numbered = _numbered_lines(text)
    header = [h.strip().lower() for h in next(csv.reader([numbered[0][1]]))] if numbered else []
    rows = [(n, dict(zip(header, next(csv.reader([ln])), strict=False))) for n, ln in numbered[1:]]
    if "td_raw_indicator" in header:
        return [_threatexchange_entry(path, n, row) for n, row in rows]
    if {"algorithm", "hash"} - set(header):
        raise ConfigError(
            f"{path}: a hash list needs the header 'algorithm,hash,label' "
            "(or a ThreatExchange export with td_raw_indicator)"
        )
    return [
        _Entry(
            n,
            (row.get("algorithm") or "").strip().lower(),
            (row.get("hash") or "").strip().lower(),
            (row.get("label") or "").strip(),
        )
        for n, row in rows
    ]


def _threatexchange_entry(path: str, lineno: int, row: dict[str, str]) -> _Entry:
    """One descriptor of a ThreatExchange CSV export; a file without td_indicator_type holds PDQ
    hashes only (as Meta's HMA-lite reads it)."""
    kind = (row.get("td_indicator_type") or "HASH_PDQ").strip().upper()
    if kind not in THREATEXCHANGE_TYPES:
        raise ConfigError(
            f"{path}:{lineno}: td_indicator_type {kind!r} is not an image hash this audit matches "
            f"(allowed: {', '.join(THREATEXCHANGE_TYPES)})"
        )
    label = (row.get("id") or row.get("td_subjective_tags") or row.get("td_description") or "").strip()
    return _Entry(
        lineno, THREATEXCHANGE_TYPES[kind], (row.get("td_raw_indicator") or "").strip().lower(), label
    )


def _check(path: str, entry: _Entry) -> None:
    where = f"{path}:{entry.lineno}"
    if entry.algorithm not in ALGORITHMS:
        raise ConfigError(
            f"{where}: unknown algorithm {entry.algorithm!r} (allowed: {', '.join(ALGORITHMS)})"
        )
    try:
        int(entry.value, 16)
    except ValueError:
        raise ConfigError(f"{where}: hash {entry.value!r} is not hexadecimal") from None
    if len(entry.value) != HEX_DIGITS[entry.algorithm]:
        raise ConfigError(
            f"{where}: a {entry.algorithm} hash has {HEX_DIGITS[entry.algorithm]} hex digits, "
            f"{entry.value!r} has {len(entry.value)}"
        )


class KnownBadLists:
    def __init__(
        self,
        paths: tuple[str, ...] | list[str],
        phash_max_distance: int = 6,
        pdq_max_distance: int = DEFAULT_PDQ_MAX_DISTANCE,
    ) -> None:
        self.exact: dict[tuple[str, str], tuple[str, str]] = {}
        phashes: list[int] = []
        pdqs: list[str] = []
        self.phash_meta: list[tuple[str, str]] = []
        self.pdq_meta: list[tuple[str, str]] = []
        self.sha256: dict[str, str] = {}
        self.max_distance = phash_max_distance
        self.pdq_max_distance = pdq_max_distance
        for path in paths:
            name = Path(path).name
            try:
                self.sha256[name] = file_sha256(path)
                text = Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"images.known_bad_lists: no such file {path}") from None
            except UnicodeDecodeError as e:
                raise ConfigError(f"{path}: a hash list must be UTF-8 text (byte {e.start} is not)") from None
            for entry in _entries(path, text):
                _check(path, entry)
                if entry.algorithm == "phash":
                    phashes.append(int(entry.value, 16))
                    self.phash_meta.append((name, entry.label))
                elif entry.algorithm == "pdq":
                    pdqs.append(entry.value)
                    self.pdq_meta.append((name, entry.label))
                else:
                    self.exact[(entry.algorithm, entry.value)] = (name, entry.label)
        self._phash = np.asarray(phashes, dtype=np.uint64)
        self._pdq = PdqIndex(pdqs, pdq_max_distance)

    def __len__(self) -> int:
        return len(self.exact) + len(self._phash) + len(self._pdq)

    @property
    def pdq_count(self) -> int:
        return len(self._pdq)

    def match_sha256(self, sha256: str) -> HashMatch | None:
        """Exact match on a SHA-256 alone: for rows known only by metadata (precomputed embeddings)."""
        hit = self.exact.get(("sha256", sha256.lower()))
        return HashMatch(hit[0], "sha256", hit[1], 0) if hit else None

    def match(
        self, data: bytes, sha256: str | None, image: Image.Image | None
    ) -> tuple[HashMatch | None, str | None]:
        """(the best exact or pHash match or None, the image's pHash as hex or None); PDQ matches
        come from ``match_pdq``, a batch at a time.

        The bytes' own digests are always computed: a dataset's sha256 column is written by
        strangers and may be wrong, so it is checked in addition, never instead.
        """
        digests = [
            ("sha256", hashlib.sha256(data).hexdigest()),
            ("md5", hashlib.md5(data).hexdigest()),
            ("sha1", hashlib.sha1(data).hexdigest()),
        ]
        if sha256:
            digests.append(("sha256", sha256))
        for algo, digest in digests:
            hit = self.exact.get((algo, digest.lower()))
            if hit:
                return HashMatch(hit[0], algo, hit[1], 0), phash_hex(image)
        ph = phash_hex(image)
        if ph is None or not len(self._phash):
            return None, ph
        xor = self._phash ^ np.uint64(int(ph, 16))
        distances = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        best = int(distances.argmin())
        if distances[best] <= self.max_distance:
            name, label = self.phash_meta[best]
            return HashMatch(name, "phash", label, int(distances[best])), ph
        return None, ph

    def match_pdq(self, hashes: Sequence[str]) -> list[HashMatch | None]:
        """The closest listed PDQ hash within ``pdq_max_distance`` of each query, or None."""
        distances, positions = self._pdq.nearest(hashes)
        out: list[HashMatch | None] = []
        for d, p in zip(distances.tolist(), positions.tolist(), strict=True):
            if p < 0:
                out.append(None)
                continue
            name, label = self.pdq_meta[p]
            out.append(HashMatch(name, "pdq", label, int(d)))
        return out


def phash_hex(image: Image.Image | None) -> str | None:
    return str(imagehash.phash(image)) if image is not None else None
