"""Known-bad hash lists: exact (MD5, SHA-256 of image bytes) and perceptual (pHash) matching.

File format (one list per file, UTF-8 CSV with a header; '#' lines are comments):

    algorithm,hash,label
    sha256,9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,ncmec-2026-11
    md5,098f6bcd4621d373cade4e832627b4f6,internal
    phash,d1c4f0e0f0f0e0c1,internal

A match is the highest severity; matched images are never rendered or copied anywhere.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from audit.clip_model import file_sha256
from audit.errors import ConfigError

ALGORITHMS = ("md5", "sha256", "phash")


@dataclass(frozen=True)
class HashMatch:
    list_name: str
    algorithm: str
    label: str
    distance: int


class KnownBadLists:
    def __init__(self, paths: tuple[str, ...] | list[str], phash_max_distance: int = 6) -> None:
        self.exact: dict[tuple[str, str], tuple[str, str]] = {}
        phashes: list[int] = []
        self.phash_meta: list[tuple[str, str]] = []
        self.sha256: dict[str, str] = {}
        self.max_distance = phash_max_distance
        for path in paths:
            name = Path(path).name
            try:
                self.sha256[name] = file_sha256(path)
                text = Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"images.known_bad_lists: no such file {path}") from None
            # physical line numbers, so an error points at the line a person would open
            numbered = [
                (n, ln)
                for n, ln in enumerate(text.splitlines(), start=1)
                if ln.strip() and not ln.startswith("#")
            ]
            header = next(csv.reader([numbered[0][1]])) if numbered else []
            if {"algorithm", "hash"} - {h.strip().lower() for h in header}:
                raise ConfigError(f"{path}: a hash list needs the header 'algorithm,hash,label'")
            columns = [h.strip().lower() for h in header]
            for lineno, line in numbered[1:]:
                row = dict(zip(columns, next(csv.reader([line])), strict=False))
                algo, value = (
                    (row.get("algorithm") or "").strip().lower(),
                    (row.get("hash") or "").strip().lower(),
                )
                label = (row.get("label") or "").strip()
                if algo not in ALGORITHMS:
                    raise ConfigError(
                        f"{path}:{lineno}: unknown algorithm {algo!r} (allowed: {', '.join(ALGORITHMS)})"
                    )
                try:
                    int(value, 16)
                except ValueError:
                    raise ConfigError(f"{path}:{lineno}: hash {value!r} is not hexadecimal") from None
                if algo == "phash":
                    phashes.append(int(value, 16))
                    self.phash_meta.append((name, label))
                else:
                    self.exact[(algo, value)] = (name, label)
        self._phash = np.asarray(phashes, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.exact) + len(self._phash)

    def match_sha256(self, sha256: str) -> HashMatch | None:
        """Exact match on a SHA-256 alone: for rows known only by metadata (precomputed embeddings)."""
        hit = self.exact.get(("sha256", sha256.lower()))
        return HashMatch(hit[0], "sha256", hit[1], 0) if hit else None

    def match(
        self, data: bytes, sha256: str | None, image: Image.Image | None
    ) -> tuple[HashMatch | None, str | None]:
        """(the best match or None, the image's pHash as hex or None).

        The bytes' own digests are always computed: a dataset's sha256 column is written by
        strangers and may be wrong, so it is checked in addition, never instead.
        """
        digests = [("sha256", hashlib.sha256(data).hexdigest()), ("md5", hashlib.md5(data).hexdigest())]
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


def phash_hex(image: Image.Image | None) -> str | None:
    return str(imagehash.phash(image)) if image is not None else None
