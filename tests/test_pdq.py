"""PDQ hashes and hash lists: ThreatExchange hex layout, Hamming threshold, ThreatExchange CSV
exports, lists of 10^6 hashes, and the known-bad stage on real images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from audit.errors import ConfigError
from audit.hashlists import KnownBadLists
from audit.pdq import PdqIndex, hex_to_bytes, pdq_hash
from audit.stages.known_bad import match_known_bad


def _texture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (256, 192), (250, 250, 245))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, 200, size=2))
        w, h = (int(v) for v in rng.integers(20, 90, size=2))
        draw.rectangle((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    return im


def _reencoded(im: Image.Image, size: tuple[int, int] = (200, 150), quality: int = 50) -> Image.Image:
    buf = io.BytesIO()
    im.resize(size).save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _flip(hex_hash: str, bits: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    v = int(hex_hash, 16)
    for b in rng.choice(256, size=bits, replace=False):
        v ^= 1 << int(b)
    return f"{v:064x}"


def _list(tmp_path: Path, body: str, name: str = "list.csv") -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def test_pdq_hex_is_threatexchange_order_most_significant_bit_first() -> None:
    import pdqhash

    im = _texture(1)
    hexed, quality = pdq_hash(im)
    bits, q = pdqhash.compute(np.asarray(im))
    assert len(hexed) == 64 and quality == q >= 50
    # pdqhash's vector starts at bit 255 (the first hex digit's high bit), as Hash256::toHexString prints
    assert hexed == "".join(f"{int(''.join(map(str, bits[i : i + 4])), 2):x}" for i in range(0, 256, 4))


def test_resized_reencoded_copy_is_near_and_another_image_is_far() -> None:
    listed = pdq_hash(_texture(1))[0]
    assert _distance(listed, pdq_hash(_reencoded(_texture(1)))[0]) <= 16
    assert _distance(listed, pdq_hash(_texture(2))[0]) > 64


def test_match_threshold_is_inclusive_at_31_bits_by_default(tmp_path: Path) -> None:
    listed = pdq_hash(_texture(3))[0]
    lists = KnownBadLists([_list(tmp_path, f"algorithm,hash,label\npdq,{listed},stopncii-1\n")])
    assert lists.pdq_max_distance == 31
    at, beyond = lists.match_pdq([_flip(listed, 31), _flip(listed, 32)])
    assert at is not None and (at.algorithm, at.label, at.distance, at.list_name) == (
        "pdq",
        "stopncii-1",
        31,
        "list.csv",
    )
    assert beyond is None
    strict = KnownBadLists([_list(tmp_path, f"algorithm,hash,label\npdq,{listed},x\n")], pdq_max_distance=10)
    assert strict.match_pdq([_flip(listed, 11)]) == [None]


def test_threatexchange_export_is_read_with_its_indicator_types(tmp_path: Path) -> None:
    pdq = pdq_hash(_texture(4))[0]
    body = (
        "id,td_raw_indicator,td_indicator_type,td_status,td_subjective_tags\n"
        f"3058061737574159,{pdq},HASH_PDQ,MALICIOUS,tag1\n"
        f"3058061737574160,{'ab' * 16},HASH_MD5,MALICIOUS,tag2\n"
    )
    lists = KnownBadLists([_list(tmp_path, body, "te.csv")])
    (hit,) = lists.match_pdq([pdq])
    assert hit is not None and hit.label == "3058061737574159" and hit.list_name == "te.csv"
    assert ("md5", "ab" * 16) in lists.exact and len(lists) == 2


def test_threatexchange_export_without_indicator_type_holds_pdq_hashes(tmp_path: Path) -> None:
    pdq = pdq_hash(_texture(5))[0]
    lists = KnownBadLists([_list(tmp_path, f"td_raw_indicator,td_subjective_tags\n{pdq},ncii\n")])
    assert lists.match_pdq([pdq])[0].label == "ncii"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("algorithm,hash,label\npdq,abcd,x\n", r"list\.csv:2: a pdq hash has 64 hex digits"),
        ("algorithm,hash,label\nsha256,abc,x\n", r"list\.csv:2: a sha256 hash has 64 hex digits"),
        (
            "td_raw_indicator,td_indicator_type\nhttp://x.invalid,URI\n",
            r"list\.csv:2: td_indicator_type 'URI'",
        ),
        (
            "td_raw_indicator,td_indicator_type\n" + "zz" * 32 + ",HASH_PDQ\n",
            r"list\.csv:2: .*not hexadecimal",
        ),
    ],
)
def test_bad_pdq_and_threatexchange_lines_name_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KnownBadLists([_list(tmp_path, body)])


def test_a_million_hash_list_finds_the_near_copy_among_them() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    listed = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    target = pdq_hash(_texture(6))[0]
    listed[777_777] = hex_to_bytes([target])[0]
    index = PdqIndex([row.tobytes().hex() for row in listed])
    assert len(index) == n
    assert index.mode == "mih"
    distances, positions = index.nearest([pdq_hash(_reencoded(_texture(6)))[0], pdq_hash(_texture(7))[0]])
    assert positions[0] == 777_777 and 0 <= distances[0] <= 31
    assert (distances[1], positions[1]) == (-1, -1)  # random 256-bit hashes are ~128 bits from anything


@pytest.mark.parametrize("max_distance", [0, 15, 31, 47])
def test_multi_index_hashing_finds_exactly_what_a_full_scan_finds(max_distance: int) -> None:
    import faiss

    rng = np.random.default_rng(max_distance)
    n = PdqIndex.MIN_MIH_SIZE + 1000
    listed = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    picks = rng.integers(0, n, 300)
    bits = np.unpackbits(listed[picks], axis=1)
    for row in bits:  # 0..max_distance + 8 flips: inside and just outside the threshold
        row[rng.choice(256, size=int(rng.integers(0, max_distance + 9)), replace=False)] ^= 1
    queries = np.packbits(bits, axis=1)
    index = PdqIndex([r.tobytes().hex() for r in listed], max_distance)
    assert index.mode == "mih"
    distances, positions = index.nearest([r.tobytes().hex() for r in queries])
    flat = faiss.IndexBinaryFlat(256)
    flat.add(listed)
    want_d, _ = flat.search(queries, 1)
    within = want_d[:, 0] <= max_distance
    assert within.any() and not within.all()
    assert np.array_equal(distances >= 0, within)
    assert np.array_equal(distances[within], want_d[within, 0])
    found = positions[within]
    assert (np.bitwise_count(listed[found] ^ queries[within]).sum(axis=1) == distances[within]).all()


def _table(images: list[bytes]) -> pa.Table:
    n = len(images)
    return pa.table({"image": pa.array(images, pa.binary()), "sha256": pa.nulls(n, pa.string())})


def test_stage_matches_by_pdq_records_quality_and_skips_featureless_images(tmp_path: Path) -> None:
    def jpeg(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=60)
        return buf.getvalue()

    flat = Image.new("RGB", (128, 128), (120, 120, 120))
    listed = pdq_hash(_texture(8))[0]
    flat_hash = pdq_hash(flat)[0]
    lists = KnownBadLists([_list(tmp_path, f"algorithm,hash,label\npdq,{listed},l\npdq,{flat_hash},flat\n")])
    raw = [jpeg(_texture(8).resize((220, 165))), jpeg(flat), jpeg(_texture(9))]
    images = {i: Image.open(io.BytesIO(b)).convert("RGB") for i, b in enumerate(raw)}
    out = match_known_bad(_table(raw), lists=lists, images=images).to_pydict()
    assert out["known_bad_match"] == [True, False, False]
    assert out["known_bad_list"][0] == "list.csv:pdq:l" and out["known_bad_distance"][0] <= 31
    # the flat image is hashed (quality under 50) but never matched, though its own hash is listed
    assert out["image_pdq"][1] == flat_hash and out["image_pdq_quality"][1] < 50
    assert all(len(h) == 64 for h in out["image_pdq"])


def test_the_index_is_built_on_its_first_query_so_text_only_workers_never_import_faiss() -> None:
    """A worker whose rows carry no image bytes loads the lists but never queries PDQ: FAISS (and
    the multi-index tables of a large list) stay unbuilt. Checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from audit.pdq import PdqIndex\n"
        f"index = PdqIndex(['{'ab' * 32}', '{'0f' * 32}'])\n"
        "assert 'faiss' not in sys.modules, 'built before any query'\n"
        f"d, p = index.nearest(['{'ab' * 31 + 'aa'}'])\n"
        "assert 'faiss' in sys.modules\n"
        "print(int(d[0]), int(p[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]


def test_a_malformed_hash_still_fails_when_the_list_is_loaded_not_on_first_query() -> None:
    with pytest.raises(ValueError):
        PdqIndex(["not hex at all"])


@pytest.mark.parametrize("n", [50, PdqIndex.MIN_MIH_SIZE])  # flat and multi-index
def test_threads_querying_a_fresh_index_at_once_get_the_same_answers(n: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(n)
    listed = [r.tobytes().hex() for r in rng.integers(0, 256, size=(n, 32), dtype=np.uint8)]
    queries = [listed[i][:-2] + "00" for i in range(0, 40)]
    want = PdqIndex(listed).nearest(queries)
    index = PdqIndex(listed)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: index.nearest(queries), range(8)))
    for d, p in results:
        assert np.array_equal(d, want[0]) and np.array_equal(p, want[1])
    assert (want[1] >= 0).all()
