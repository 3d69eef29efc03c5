"""Image acquisition: run img2dataset on LAION-style metadata shards, keeping every metadata column.

``fetch_images(shards, out, settings=FetchSettings())`` downloads the images of each metadata
parquet shard into its own folder ``OUT/<shard_id>/`` (img2dataset's ``00000.parquet`` or
``00000.tar`` + sidecar ``00000.parquet``, with ``00000_stats.json``), so that:

- every input row appears exactly once in the output; failed rows keep ``status`` and
  ``error_message`` and have no image, and the audit scores them text-only;
- every metadata column is kept (``save_additional_columns``): similarity, NSFW, punsafe, hash,
  SAMPLE_ID ... (URL and TEXT become img2dataset's ``url`` and ``caption``; a metadata column whose
  exact name img2dataset writes itself, e.g. ``width`` or ``sha256``, is kept as ``source_<name>``);
- a rerun resumes: img2dataset's own incremental mode skips output shards whose ``_stats.json``
  exists, and a shard folder per input shard means a shard set can grow without renumbering;
- the outputs are what ``audit.shards.discover_shards`` reads: pass ``OUT/*/*.parquet``
  (or ``OUT/*/*.tar`` for webdataset) to ``mmaudit audit --shards``.

img2dataset starts its workers with the ``spawn`` method, which imports the parent's ``__main__``:
this module does nothing at import time but set ``NO_ALBUMENTATIONS_UPDATE``, and img2dataset is
imported only when a fetch runs. Scripts that call ``fetch_images`` need an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import fsspec
import pyarrow.parquet as pq

from audit.errors import AuditError, ConfigError, InputFileError
from audit.shards import ShardSpec, check_columns, discover_shards, read_parquet_schema

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

OutputFormat = Literal["parquet", "webdataset"]
# Columns img2dataset writes itself (besides the image column, named after encode_format).
IMG2DATASET_COLUMNS = frozenset(
    {"key", "url", "caption", "status", "error_message", "width", "height",
     "original_width", "original_height", "exif", "txt", "json"}
)  # fmt: skip
FETCH_SUMMARY = "fetch.json"


class FetchError(AuditError):
    """Some output shards were not written after img2dataset's retries; rerun to resume."""

    exit_code = 3


@dataclass(frozen=True)
class FetchSettings:
    """img2dataset's knobs that matter for an audit, with defaults for a polite single-machine fetch.

    ``disallowed_header_directives``: None keeps img2dataset's default (images whose X-Robots-Tag
    says noai, noimageai, noindex or noimageindex are not downloaded); ``()`` turns the check off.
    """

    output_format: OutputFormat = "parquet"
    image_size: int = 256
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "keep_ratio"
    resize_only_if_bigger: bool = False
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = 95
    processes_count: int = 1
    thread_count: int = 16
    timeout: int = 10
    retries: int = 0
    number_sample_per_shard: int = 10_000
    keep_metadata: bool = True  # save_additional_columns: every metadata column
    disallowed_header_directives: tuple[str, ...] | None = None
    user_agent_token: str | None = None
    incremental_mode: Literal["incremental", "overwrite"] = "incremental"
    extract_exif: bool = True
    compute_hash: Literal["sha256", "md5", "sha512"] | None = "sha256"
    min_image_size: int = 0
    max_shard_retry: int = 1

    def __post_init__(self) -> None:
        positive = ("image_size", "processes_count", "thread_count", "timeout", "number_sample_per_shard")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"fetch.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("retries", "min_image_size", "max_shard_retry"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"fetch.{name} must be >= 0, got {getattr(self, name)}")
        if self.output_format not in ("parquet", "webdataset"):
            raise ConfigError(
                f"fetch.output_format must be parquet or webdataset, got {self.output_format!r}"
            )
        if self.encode_format not in ("jpg", "png", "webp"):
            raise ConfigError(f"fetch.encode_format must be jpg, png or webp, got {self.encode_format!r}")
        if self.incremental_mode not in ("incremental", "overwrite"):
            raise ConfigError(
                f"fetch.incremental_mode must be incremental or overwrite, got {self.incremental_mode!r}"
            )


# --- stats -----------------------------------------------------------------------------------------

_ADDRESS = re.compile(r" (object )?at 0x[0-9a-fA-F]+")
_HTTP = re.compile(r"HTTP Error (\d{3})")
# (substring of the lower-cased message, reason), first match wins
_REASONS: tuple[tuple[str, str], ...] = (
    ("x-robots-tag", "x_robots_tag_disallowed"),
    ("hash mismatch", "hash_mismatch"),
    ("connection refused", "connection_refused"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("unknown url type", "unsupported_url"),
    ("unsupported", "unsupported_url"),
    ("ftp error", "unsupported_url"),
    ("name or service not known", "dns"),
    ("temporary failure in name resolution", "dns"),
    ("nodename nor servname", "dns"),
    ("getaddrinfo", "dns"),
    ("certificate", "tls"),
    ("ssl", "tls"),
    ("connection reset", "connection_reset"),
    ("remote end closed", "connection_closed"),
    ("incompleteread", "connection_closed"),
    ("image too small", "image_too_small"),
    ("image area too large", "image_too_large"),
    ("aspect ratio too large", "aspect_ratio_too_large"),
    ("truncated", "image_undecodable"),
    ("cannot identify image", "image_undecodable"),
    ("image decoding error", "image_undecodable"),
    ("decod", "image_undecodable"),
    ("nonetype", "image_undecodable"),  # cv2.imdecode gave None: bytes that are not an image
)


def error_reason(message: str | None) -> str:
    """A stable reason code for an img2dataset status/error message ("success", "http_404", ...)."""
    if message is None or message == "success":
        return "success"
    if m := _HTTP.search(message):
        return f"http_{m.group(1)}"
    low = message.lower()
    return next((reason for needle, reason in _REASONS if needle in low), "other")


def clean_message(message: str) -> str:
    """The message without object addresses, so equal errors count as one."""
    return _ADDRESS.sub("", message)


@dataclass
class FetchStats:
    """Counts summed over img2dataset's ``*_stats.json``; ``reasons`` groups ``messages`` by cause."""

    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_resize: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # img2dataset's status_dict, cleaned
    reasons: dict[str, int] = field(default_factory=dict)  # error_reason(message) -> rows
    duration_s: float = 0.0  # summed over output shards (wall time of each shard's worker)

    @classmethod
    def from_stats_json(cls, doc: dict) -> FetchStats:
        messages: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for msg, n in (doc.get("status_dict") or {}).items():
            messages[clean_message(msg)] += int(n)
            reasons[error_reason(msg)] += int(n)
        return cls(
            count=int(doc.get("count", 0)),
            successes=int(doc.get("successes", 0)),
            failed_to_download=int(doc.get("failed_to_download", 0)),
            failed_to_resize=int(doc.get("failed_to_resize", 0)),
            messages=dict(messages.most_common()),
            reasons=dict(reasons.most_common()),
            duration_s=float(doc.get("duration", 0.0)),
        )

    def __add__(self, other: FetchStats) -> FetchStats:
        return FetchStats(
            count=self.count + other.count,
            successes=self.successes + other.successes,
            failed_to_download=self.failed_to_download + other.failed_to_download,
            failed_to_resize=self.failed_to_resize + other.failed_to_resize,
            messages=dict((Counter(self.messages) + Counter(other.messages)).most_common()),
            reasons=dict((Counter(self.reasons) + Counter(other.reasons)).most_common()),
            duration_s=self.duration_s + other.duration_s,
        )

    @property
    def failed(self) -> int:
        return self.failed_to_download + self.failed_to_resize

    @property
    def success_rate(self) -> float:
        return self.successes / self.count if self.count else 0.0


@dataclass
class FetchedShard:
    input: str  # the metadata parquet
    shard_id: str
    folder: str  # OUT/<shard_id>
    outputs: list[str]  # img2dataset's .parquet (parquet) or .tar (webdataset) files, in order
    rows: int  # rows in the metadata shard
    stats: FetchStats


@dataclass
class FetchResult:
    out: str
    settings: FetchSettings
    shards: list[FetchedShard]
    stats: FetchStats
    seconds: float

    @property
    def outputs(self) -> list[str]:
        """Every output shard, ready for ``mmaudit audit --shards``."""
        return [p for s in self.shards for p in s.outputs]

    def to_dict(self) -> dict:
        stats = asdict(self.stats) | {"failed": self.stats.failed, "success_rate": self.stats.success_rate}
        return {
            "out": self.out,
            "settings": asdict(self.settings),
            "seconds": round(self.seconds, 3),
            "stats": stats,
            "shards": [asdict(s) for s in self.shards],
        }


# --- the fetch -------------------------------------------------------------------------------------

FETCHABLE_FORMATS = ("laion_metadata", "datacomp")


def metadata_specs(inputs: list[str] | tuple[str, ...]) -> list[ShardSpec]:
    """Metadata parquet shards (files, directories or globs), each with a URL and a caption column."""
    specs = discover_shards(list(inputs))
    for spec in specs:
        if spec.format == "img2dataset_parquet":  # a URL list with its own key column is fine
            names = {n.lower() for n in read_parquet_schema(spec.path).names}
            if not names & {"status", "jpg", "image", "png", "webp"}:
                continue
        if spec.format not in FETCHABLE_FORMATS:
            raise InputFileError(
                f"{spec.path}: not a metadata shard ({spec.format}); fetch takes LAION-style metadata "
                "parquet with URL and TEXT/caption columns"
            )
    return specs


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


@dataclass(frozen=True)
class _Plan:
    url_list: str  # what img2dataset reads: the shard itself, or a copy with clashing columns renamed
    url_col: str
    caption_col: str
    additional: list[str] | None
    renamed: dict[str, str]
    rows: int


def _plan(spec: ShardSpec, settings: FetchSettings, tmp: str) -> _Plan:
    schema = read_parquet_schema(spec.path)
    cols = check_columns(spec.path, schema, "laion_metadata")  # URL + TEXT/caption, case-insensitive
    url_col, caption_col = cols["url"], cols["caption"]
    taken = IMG2DATASET_COLUMNS | {settings.encode_format} | ({settings.compute_hash} - {None})
    renamed: dict[str, str] = {}
    extras: list[str] = []
    for name in schema.names:
        if name in (url_col, caption_col):
            continue
        new = name
        while new in taken or (new != name and new in schema.names):
            new = f"source_{new}"
        if new != name:
            renamed[name] = new
        extras.append(new)
        taken = taken | {new}
    fs, path = fsspec.core.url_to_fs(spec.path)
    with fs.open(path, "rb") as f:
        rows = pq.ParquetFile(f).metadata.num_rows
    url_list = spec.path
    if renamed and settings.keep_metadata:
        # img2dataset would overwrite (sha256) or duplicate (key, width) these: keep them renamed
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        table = table.rename_columns([renamed.get(n, n) for n in table.column_names])
        url_list = os.path.join(tmp, f"{spec.shard_id}.parquet")
        pq.write_table(table, url_list)
        del table
    return _Plan(
        url_list=url_list,
        url_col=url_col,
        caption_col=caption_col,
        additional=extras if settings.keep_metadata and extras else None,
        renamed=renamed,
        rows=rows,
    )


@contextlib.contextmanager
def _keep_sigint() -> Iterator[None]:
    """img2dataset installs its own SIGINT handler (and can only do so on the main thread)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _download(plan: _Plan, folder: str, settings: FetchSettings) -> None:
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    from img2dataset import download  # heavy (cv2, albumentations): imported only to fetch

    if threading.current_thread() is not threading.main_thread():
        raise ConfigError("fetch_images must run on the main thread (img2dataset installs a SIGINT handler)")
    directives = settings.disallowed_header_directives
    with _keep_sigint():
        download(
            url_list=plan.url_list,
            output_folder=folder,
            input_format="parquet",
            url_col=plan.url_col,
            caption_col=plan.caption_col,
            save_additional_columns=list(plan.additional) if plan.additional else None,
            output_format=settings.output_format,
            image_size=settings.image_size,
            resize_mode=settings.resize_mode,
            resize_only_if_bigger=settings.resize_only_if_bigger,
            encode_format=settings.encode_format,
            encode_quality=settings.encode_quality,
            processes_count=settings.processes_count,
            thread_count=settings.thread_count,
            timeout=settings.timeout,
            retries=settings.retries,
            number_sample_per_shard=settings.number_sample_per_shard,
            disallowed_header_directives=None if directives is None else list(directives),
            user_agent_token=settings.user_agent_token,
            incremental_mode=settings.incremental_mode,
            extract_exif=settings.extract_exif,
            compute_hash=settings.compute_hash,
            min_image_size=settings.min_image_size,
            max_shard_retry=settings.max_shard_retry,
            enable_wandb=False,
            distributor="multiprocessing",
        )


def _collect(
    spec: ShardSpec, plan: _Plan, folder: str, settings: FetchSettings
) -> tuple[FetchedShard, list[str]]:
    """The shard's outputs and summed stats; plus the output shards that are missing."""
    fs, root = fsspec.core.url_to_fs(folder)
    expected = max(1, math.ceil(plan.rows / settings.number_sample_per_shard)) if plan.rows else 0
    suffix = ".tar" if settings.output_format == "webdataset" else ".parquet"
    outputs: list[str] = []
    missing: list[str] = []
    stats = FetchStats()
    for i in range(expected):
        name = f"{i:05d}"
        out_path, stats_path = _join(root, name + suffix), _join(root, name + "_stats.json")
        if not (fs.exists(stats_path) and fs.exists(out_path)):
            missing.append(_join(folder, name + suffix))
            continue
        with fs.open(stats_path, "r") as f:
            stats = stats + FetchStats.from_stats_json(json.load(f))
        outputs.append(_join(folder, name + suffix))
    return FetchedShard(spec.path, spec.shard_id, folder, outputs, plan.rows, stats), missing


def fetch_images(
    metadata_shards: list[str] | tuple[str, ...],
    out: str,
    *,
    settings: FetchSettings | None = None,
    write_summary: bool = True,
) -> FetchResult:
    """Download the images of LAION-style metadata shards with img2dataset into ``OUT/<shard_id>/``.

    Returns each input shard's output files and the fetch stats summed from img2dataset's
    ``*_stats.json`` (count, successes, failures, rows by message and by reason). Writes the same
    as ``OUT/fetch.json`` unless ``write_summary=False``. Raises ``FetchError`` if an output shard is
    still missing after img2dataset's shard retries (rerunning resumes where it stopped).
    """
    settings = settings or FetchSettings()
    specs = metadata_specs(metadata_shards)
    t0 = time.perf_counter()
    fs, root = fsspec.core.url_to_fs(out)
    fs.makedirs(root, exist_ok=True)
    shards: list[FetchedShard] = []
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mmaudit-fetch-") as tmp:
        plans = [_plan(spec, settings, tmp) for spec in specs]  # every shard checked before any fetch
        for spec, plan in zip(specs, plans, strict=True):
            folder = _join(out, spec.shard_id)
            if plan.rows:
                _download(plan, folder, settings)
            shard, lost = _collect(spec, plan, folder, settings)
            shards.append(shard)
            missing += lost
    total = sum((s.stats for s in shards), FetchStats())
    result = FetchResult(out, settings, shards, total, time.perf_counter() - t0)
    if write_summary:
        with fs.open(_join(root, FETCH_SUMMARY), "w") as f:
            json.dump(result.to_dict(), f, indent=2)
    if missing:
        raise FetchError(
            f"{len(missing)} output shards were not written ({', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}); rerun the same command to resume"
        )
    return result


def with_overrides(settings: FetchSettings, **overrides: object) -> FetchSettings:
    """``settings`` with the given fields replaced (None values are ignored), validated again."""
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
