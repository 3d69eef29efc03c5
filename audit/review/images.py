"""Thumbnails of flagged rows: from the row's own position in its shard, through the pipeline's safe
decoder (audit.images.decode_image), blurred unless revealed, optionally grayscale, cached.

Only rows that audit.render_policy.may_render allows ever get pixels; the check comes before any byte
of the shard is read. A shard is streamed once for all the rows asked of it (a gallery page), its
sha256 checked against the audit's record before any of its images is used, and only the wanted
rows' bytes are kept, so memory does not grow with the shard.
"""

from __future__ import annotations

import concurrent.futures
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageFilter

from audit.errors import AuditError, InputFileError
from audit.images import DecodeFailure, decode_image
from audit.render_policy import may_render, never_render
from audit.review.run import ReviewRun, first_line, flag_row
from audit.schemas import ShardRecord
from audit.shards import ShardSpec

THUMB_MAX_SIDE = 256
# Strong enough that a 256 px thumbnail shows layout and colour but no recognisable detail.
BLUR_RADIUS = 12
IMAGELESS_FORMATS = ("laion_metadata", "clip_retrieval")  # URLs or embeddings only
THUMB_CACHE_BYTES = 96 << 20  # unblurred thumbnails kept per dashboard process (~500 of them)


class ImageUnavailableError(AuditError):
    """A flagged row's image cannot (or must not) be shown; ``str(err)`` says why in one line."""


class ShardChangedError(ImageUnavailableError):
    """The shard's bytes differ from the audited ones: not cached, the shard may be put back."""


class ShardUnreadableError(ShardChangedError):
    """The shard cannot be opened or read now (moved, deleted, a network error): not cached either."""


def render_blocked(row: Mapping) -> bool:
    """Its image is never shown, thumbnailed or copied, blurred or not, and the row is only counted
    and listed by row id (audit.render_policy.never_render)."""
    return never_render(row)


def shard_spec(run: ReviewRun, shard_id: str) -> ShardSpec:
    """The input shard a run read, rebuilt from its manifest record."""
    record = _record(run, shard_id)
    sidecar = None
    if record.format == "webdataset" and record.path.endswith(".tar"):
        candidate = record.path[: -len(".tar")] + ".parquet"
        fs, path = fsspec.core.url_to_fs(candidate)
        sidecar = candidate if fs.exists(path) else None  # as discover_shards pairs them
    return ShardSpec(record.shard_id, record.path, record.format, sidecar)  # type: ignore[arg-type]


def _record(run: ReviewRun, shard_id: str) -> ShardRecord:
    record = next((s for s in run.manifest.shards if s.shard_id == shard_id), None)
    if record is None:
        raise InputFileError(f"{run.folder.manifest}: no shard {shard_id!r}")
    return record


class _ThumbCache:
    """Unblurred thumbnails (or why a row has none) by (shard path, shard sha256, row id), LRU within
    a byte budget. Blur and grayscale are applied per request: they are cheap at 256 px."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[tuple[str, str, str], Image.Image | ImageUnavailableError] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(item: Image.Image | ImageUnavailableError) -> int:
        return item.width * item.height * 3 if isinstance(item, Image.Image) else 256

    def get(self, key: tuple[str, str, str]) -> Image.Image | ImageUnavailableError | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str, str], item: Image.Image | ImageUnavailableError) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += self._size(item)
            while self._bytes > self.budget and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


THUMBNAILS = _ThumbCache(THUMB_CACHE_BYTES)
_SHARD_LOCKS: dict[str, threading.Lock] = {}
_SHARD_LOCKS_GUARD = threading.Lock()


def _shard_lock(path: str) -> threading.Lock:
    with _SHARD_LOCKS_GUARD:
        return _SHARD_LOCKS.setdefault(path, threading.Lock())


def _refuse(row: Mapping, spec: ShardSpec) -> ImageUnavailableError | None:
    """Why no pixels of this row may be read at all, in the order the reasons are true."""
    row_id = row["row_id"]
    if spec.format in IMAGELESS_FORMATS:  # said first: no pixels are read, and it is the true reason
        return ImageUnavailableError(
            f"{row_id}: shard {spec.shard_id} is {spec.format}, which carries no images"
        )
    if not may_render(row):
        return ImageUnavailableError(
            f"{row_id}: never rendered (a known-bad match, a never-render rule, or no hash-list outcome)"
        )
    return None


def _read_shard_rows(
    run: ReviewRun, spec: ShardSpec, record: ShardRecord, wanted: dict[int, str]
) -> dict[str, Image.Image | ImageUnavailableError]:
    """Thumbnails of the rows at ``wanted`` positions (row_index -> row_id), one pass over the shard."""
    from audit.readers import iter_shard  # heavy import, only when an image is asked for

    reader = iter_shard(spec)
    found: dict[str, bytes | None] = {}
    positions = pa.array(sorted(wanted), pa.int64())
    try:
        for batch in reader.batches():
            hit = pc.is_in(batch.column("row_index"), value_set=positions)
            if not pc.any(hit).as_py():
                continue
            rows = batch.filter(hit).select(["row_id", "row_index", "image"]).to_pylist()
            for r in rows:
                if r["row_id"] == wanted[r["row_index"]]:
                    found[r["row_id"]] = r["image"]
    except (AuditError, OSError) as e:  # moved, deleted or unreadable since the audit
        why = first_line(e)
        err = ShardUnreadableError(f"{spec.path}: the shard cannot be read ({why})")
        return {row_id: err for row_id in wanted.values()}
    if record.sha256 and reader.sha256 != record.sha256:
        # the row's position may now hold a different image than the one that was scored
        err = ShardChangedError(f"{spec.path}: the shard changed since the audit (sha256 differs)")
        return {row_id: err for row_id in wanted.values()}
    max_pixels = int(run.manifest.config.get("images", {}).get("max_pixels", 89_478_485))
    out: dict[str, Image.Image | ImageUnavailableError] = {}
    for row_id in wanted.values():
        if row_id not in found:
            out[row_id] = ImageUnavailableError(
                f"{row_id}: not found at its position in shard {spec.shard_id}"
            )
            continue
        data = found[row_id]
        if not data:
            out[row_id] = ImageUnavailableError(
                f"{row_id}: shard {spec.shard_id} holds no image bytes for this row"
            )
            continue
        im = decode_image(data, max_pixels)
        if isinstance(im, DecodeFailure):
            out[row_id] = ImageUnavailableError(
                f"{row_id}: image cannot be decoded ({im.reason}: {im.detail})"
            )
            continue
        im.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
        out[row_id] = im
    return out


def _finish(im: Image.Image, blur: bool, grayscale: bool) -> bytes:
    if grayscale:
        im = im.convert("L")
    if blur:
        im = im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=85)
    return out.getvalue()


def load_thumbnails(
    run: ReviewRun,
    rows: Iterable[Mapping],
    blur: bool = True,
    grayscale: bool = False,
    *,
    only: Iterable[str] | None = None,
) -> dict[str, bytes | ImageUnavailableError]:
    """JPEG thumbnails (longest side THUMB_MAX_SIDE) of flag rows, by row id; each row that has none
    maps to the ImageUnavailableError saying why. Rows are flag rows (dicts with row_id, shard_id,
    row_index and the render-policy columns); each shard is read at most once. With ``only``, the
    other rows are read into the cache in the same pass (the rows a reviewer opens next) and only
    those row ids are returned."""
    out: dict[str, bytes | ImageUnavailableError] = {}
    todo: dict[str, dict[int, str]] = {}
    for row in rows:
        spec = shard_spec(run, row["shard_id"])
        if (refused := _refuse(row, spec)) is not None:
            out[row["row_id"]] = refused
            continue
        record = _record(run, spec.shard_id)
        cached = THUMBNAILS.get((record.path, record.sha256, row["row_id"]))
        if cached is None:
            todo.setdefault(spec.shard_id, {})[int(row["row_index"])] = row["row_id"]
        else:
            out[row["row_id"]] = cached  # type: ignore[assignment]
    for shard_id, wanted in todo.items():
        record = _record(run, shard_id)
        with _shard_lock(record.path):  # a prefetch already reading this shard: wait for it, not read twice
            for index, row_id in list(wanted.items()):
                cached = THUMBNAILS.get((record.path, record.sha256, row_id))
                if cached is not None:
                    out[row_id] = cached  # type: ignore[assignment]
                    del wanted[index]
            read = _read_shard_rows(run, shard_spec(run, shard_id), record, wanted) if wanted else {}
            for row_id, item in read.items():
                if not isinstance(item, ShardChangedError):
                    THUMBNAILS.put((record.path, record.sha256, row_id), item)
                out[row_id] = item  # type: ignore[assignment]
    wanted = set(out) if only is None else set(only)
    return {
        row_id: item if isinstance(item, ImageUnavailableError) else _finish(item, blur, grayscale)  # type: ignore[arg-type]
        for row_id, item in out.items()
        if row_id in wanted
    }


def is_cached(run: ReviewRun, row: Mapping) -> bool:
    """Whether the row's thumbnail (or why it has none) is in the cache: showing it reads no shard."""
    try:
        record = _record(run, row["shard_id"])
    except InputFileError:
        return False
    return THUMBNAILS.get((record.path, record.sha256, row["row_id"])) is not None


_PREFETCH = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmaudit-thumbs")


def prefetch(
    run: ReviewRun, rows: Iterable[Mapping] | Callable[[], Iterable[Mapping]]
) -> concurrent.futures.Future:
    """Read the thumbnails of ``rows`` (or of what ``rows()`` returns, called in the background too)
    into the cache in a background thread, one at a time per process: the pages warm the rows a
    reviewer is about to open. Rows already cached cost nothing; errors stay in the future."""

    def work() -> None:
        load_thumbnails(run, list(rows() if callable(rows) else rows), only=())

    return _PREFETCH.submit(work)


def load_image(run: ReviewRun, row_id: str, blur: bool = True, grayscale: bool = False) -> bytes:
    """JPEG thumbnail of a flagged row, Gaussian-blurred unless blur=False.

    The image is the one at the row's own position in its shard (never looked up by key). KeyError
    for a row that is not flagged; ImageUnavailableError when the row has no image bytes, the shard
    changed since the audit, the bytes do not decode, or the row may not be rendered.
    """
    row = flag_row(run, row_id)
    result = load_thumbnails(run, [row], blur=blur, grayscale=grayscale)[row_id]
    if isinstance(result, ImageUnavailableError):
        raise type(result)(str(result))  # a fresh error: the cached one is shared
    return result
