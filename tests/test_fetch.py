"""Image acquisition with img2dataset: a real local HTTP server, real downloads, then a real audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from audit.benchmarks.fetch import LocalImageServer, closed_port, jpeg_bytes, laion_metadata
from audit.errors import ConfigError, MissingColumnError
from audit.fetch import FetchSettings, FetchStats, _plan, error_reason, fetch_images, metadata_specs
from audit.readers import read_shard
from audit.shards import discover_shards

OFFENSIVE = "what a dumb bitch"


@dataclass
class Fetched:
    meta: Path
    out: Path
    table: pa.Table  # the metadata rows
    good: set[str]  # URLs that must be fetched
    dead: set[str]  # URLs that must fail
    result: object


def _rows(server: LocalImageServer) -> list[tuple[str, str]]:
    b = server.base
    good = [(f"{b}/img/{i}.jpg", f"a photo of a red barn number {i}") for i in range(6)]
    good += [(f"{b}/redirect/7.jpg", "a redirected photo of a lighthouse")]
    good += [(f"{b}/img/8.jpg", OFFENSIVE)]
    dead = [
        (f"{b}/missing.jpg", "a photo that was taken down"),
        (f"http://127.0.0.1:{closed_port()}/gone.jpg", "a host that refuses connections"),
        ("ftp://127.0.0.1/pub/cat.jpg", "a cat on an ftp server"),
        ("notascheme://example/cat.jpg", "a cat behind an unknown scheme"),
        (f"{b}/text.jpg", "a text file named like a jpeg"),
        (f"{b}/truncated.jpg", "a truncated jpeg"),
        (f"{b}/noai/9.jpg", "an image whose site says noai"),
    ]
    return good + dead


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Fetched:
    work = tmp_path_factory.mktemp("fetch")
    with LocalImageServer() as server:
        rows = _rows(server)
        urls = [u for u, _ in rows]
        table = laion_metadata(urls, [c for _, c in rows])
        meta = work / "laion_metadata" / "part-00000.parquet"
        meta.parent.mkdir()
        pq.write_table(table, meta)
        result = fetch_images([str(meta)], str(work / "fetched"), settings=FetchSettings(timeout=5))
    good = {u for u in urls if "/img/" in u or "/redirect/" in u}
    return Fetched(meta, work / "fetched", table, good, set(urls) - good, result)


def _url_of(table: pa.Table, caption: str) -> str:
    return table.filter(pc.equal(table.column("TEXT"), caption)).column("URL")[0].as_py()


def _output(f: Fetched) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in f.result.outputs)


# --- fast checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (None, "success"),
        ("HTTP Error 404: Not Found", "http_404"),
        ("<urlopen error [Errno 111] Connection refused>", "connection_refused"),
        ("<urlopen error unknown url type: notascheme>", "unsupported_url"),
        ("The read operation timed out", "timeout"),
        ("Image decoding error", "image_undecodable"),
        ("Use of image disallowed by X-Robots-Tag directive", "x_robots_tag_disallowed"),
        ("something new", "other"),
    ],
)
def test_error_messages_map_to_stable_reasons(message: str | None, reason: str) -> None:
    assert error_reason(message) == reason


def test_stats_sum_and_drop_object_addresses() -> None:
    a = FetchStats.from_stats_json(
        {"count": 3, "successes": 1, "failed_to_download": 1, "failed_to_resize": 1,
         "status_dict": {"success": 1, "HTTP Error 404: Not Found": 1,
                         "cannot identify image file <_io.BytesIO object at 0x7f00aa>": 1}}
    )  # fmt: skip
    b = FetchStats.from_stats_json({"count": 1, "successes": 1, "status_dict": {"success": 1}})
    total = a + b
    assert (total.count, total.successes, total.failed) == (4, 2, 2)
    assert total.messages["cannot identify image file <_io.BytesIO>"] == 1
    assert total.reasons == {"success": 2, "http_404": 1, "image_undecodable": 1}


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="thread_count"):
        FetchSettings(thread_count=0)
    with pytest.raises(ConfigError, match="output_format"):
        FetchSettings(output_format="tfrecord")  # type: ignore[arg-type]


def test_metadata_columns_img2dataset_writes_itself_are_kept_renamed(tmp_path: Path) -> None:
    t = pa.table(
        {"url": ["http://x/a.jpg"], "caption": ["a"], "key": ["k1"], "sha256": ["ab"], "NSFW": ["?"]}
    )
    pq.write_table(t, tmp_path / "m.parquet")
    (spec,) = metadata_specs([str(tmp_path / "m.parquet")])
    plan = _plan(spec, FetchSettings(), str(tmp_path))
    assert plan.renamed == {"key": "source_key", "sha256": "source_sha256"}
    assert plan.additional == ["source_key", "source_sha256", "NSFW"]
    assert pq.read_schema(plan.url_list).names == ["url", "caption", "source_key", "source_sha256", "NSFW"]


def test_a_shard_without_urls_fails_with_one_line(tmp_path: Path) -> None:
    pq.write_table(pa.table({"TEXT": ["a"]}), tmp_path / "m.parquet")
    with pytest.raises(MissingColumnError, match=r"m\.parquet: required column 'url'"):
        fetch_images([str(tmp_path / "m.parquet")], str(tmp_path / "out"))


# --- real fetches ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_input_row_appears_once_with_its_metadata(fetched: Fetched) -> None:
    out = _output(fetched)
    assert sorted(out.column("url").to_pylist()) == sorted(fetched.table.column("URL").to_pylist())
    assert sorted(out.column("SAMPLE_ID").to_pylist()) == fetched.table.column("SAMPLE_ID").to_pylist()
    assert len(set(out.column("key").to_pylist())) == out.num_rows
    for name in ("similarity", "NSFW", "punsafe", "pwatermark", "hash", "LICENSE", "WIDTH", "HEIGHT"):
        assert name in out.column_names, name
    by_id = {
        r["SAMPLE_ID"]: r for r in out.select(["SAMPLE_ID", "similarity", "hash", "caption"]).to_pylist()
    }
    for r in fetched.table.select(["SAMPLE_ID", "similarity", "hash", "TEXT"]).to_pylist():
        got = by_id[r["SAMPLE_ID"]]
        assert (got["similarity"], got["hash"], got["caption"]) == (r["similarity"], r["hash"], r["TEXT"])


@pytest.mark.slow
def test_good_and_redirected_images_are_fetched_and_dead_urls_keep_their_error(fetched: Fetched) -> None:
    rows = {
        r["url"]: r for r in _output(fetched).select(["url", "status", "error_message", "jpg"]).to_pylist()
    }
    for url in fetched.good:
        assert rows[url]["status"] == "success", (url, rows[url]["error_message"])
        assert rows[url]["jpg"][:2] == b"\xff\xd8"  # a JPEG
    for url in fetched.dead:
        assert rows[url]["status"] in ("failed_to_download", "failed_to_resize"), url
        assert rows[url]["error_message"], url
        assert rows[url]["jpg"] is None, url


@pytest.mark.slow
def test_result_sums_img2dataset_stats_and_is_written_beside_the_shards(fetched: Fetched) -> None:
    r = fetched.result
    (shard,) = r.shards
    assert shard.input == str(fetched.meta) and shard.rows == fetched.table.num_rows
    assert r.outputs == [str(fetched.out / "part-00000" / "00000.parquet")]
    assert r.stats.count == fetched.table.num_rows
    assert r.stats.successes == len(fetched.good) and r.stats.failed == len(fetched.dead)
    assert r.stats.reasons["http_404"] == 1 and r.stats.reasons["x_robots_tag_disallowed"] == 1
    assert r.stats.reasons["connection_refused"] >= 1 and r.stats.reasons["image_undecodable"] == 2
    assert sum(r.stats.reasons.values()) == r.stats.count
    doc = json.loads((fetched.out / "fetch.json").read_text())
    assert doc["stats"]["successes"] == r.stats.successes and doc["shards"][0]["outputs"] == r.outputs


@pytest.mark.slow
def test_fetched_shards_are_read_by_the_audit_readers(fetched: Fetched) -> None:
    specs = discover_shards([str(fetched.out / "part-00000")])
    assert [s.format for s in specs] == ["img2dataset_parquet"]
    data = read_shard(specs[0]).table
    assert data.num_rows == fetched.table.num_rows
    rows = data.select(["url", "image", "fetch_status", "fetch_error", "quarantine_reason"]).to_pylist()
    for r in rows:
        if r["url"] in fetched.good:
            assert r["image"] and r["fetch_status"] == "success"
        else:
            assert r["image"] is None and r["fetch_status"] != "success" and r["fetch_error"]
        assert r["quarantine_reason"] is None  # failed fetches are audited text-only, not quarantined


@pytest.mark.slow
def test_rerun_resumes_without_downloading_again(fetched: Fetched) -> None:
    shard = fetched.out / "part-00000" / "00000.parquet"
    stamp = shard.stat().st_mtime_ns
    again = fetch_images([str(fetched.meta)], str(fetched.out), settings=FetchSettings(timeout=5))
    assert shard.stat().st_mtime_ns == stamp
    assert again.stats == fetched.result.stats


@pytest.mark.slow
def test_webdataset_output_is_read_with_its_sidecar(tmp_path: Path) -> None:
    with LocalImageServer() as server:
        urls = [f"{server.base}/img/1.jpg", f"{server.base}/missing.jpg", f"{server.base}/img/2.jpg"]
        pq.write_table(laion_metadata(urls, ["one", "two", "three"]), tmp_path / "meta.parquet")
        result = fetch_images(
            [str(tmp_path / "meta.parquet")], str(tmp_path / "out"),
            settings=FetchSettings(output_format="webdataset", timeout=5),
        )  # fmt: skip
    assert result.outputs == [str(tmp_path / "out" / "meta" / "00000.tar")]
    (spec,) = discover_shards([str(tmp_path / "out" / "meta")])
    assert spec.format == "webdataset" and spec.sidecar
    data = read_shard(spec).table
    assert sorted(data.column("url").to_pylist()) == sorted(urls)
    images = dict(zip(data.column("url").to_pylist(), data.column("image").to_pylist(), strict=True))
    assert images[urls[1]] is None and images[urls[0]] and images[urls[2]]
    assert sorted(data.column("source_similarity").to_pylist()) == pytest.approx(  # float32 there
        sorted(pq.read_table(tmp_path / "meta.parquet").column("similarity").to_pylist()), rel=1e-6
    )


# --- end to end: fetch, then audit ------------------------------------------------------------------


@pytest.mark.slow
def test_fetched_set_audits_end_to_end(fetched: Fetched, make_config, tmp_path: Path) -> None:
    from audit.pipelines.audit_run import run_audit

    run = tmp_path / "run"
    summary = run_audit(make_config(shards=[str(fetched.out / "part-00000")], out=str(run)))
    n = fetched.table.num_rows
    assert summary.rows_in == n == summary.rows_scored + summary.rows_quarantined
    assert summary.rows_quarantined == 0
    (scores_file,) = (run / "scores").glob("*.parquet")
    scores = pq.read_table(scores_file)
    # audited rows are keyed by the dataset's own SAMPLE_ID, kept through the fetch
    output = _output(fetched)
    sample_ids = [str(v) for v in output.column("SAMPLE_ID").to_pylist()]
    key_of = dict(zip(output.column("url").to_pylist(), sample_ids, strict=True))
    status = dict(
        zip(scores.column("key").to_pylist(), scores.column("image_status").to_pylist(), strict=True)
    )
    assert {status[key_of[u]] for u in fetched.dead} == {"absent"}  # text-only
    assert {status[key_of[u]] for u in fetched.good} == {"decoded"}
    flags = pq.read_table(run / "flags.parquet")
    reasons = dict(zip(flags.column("key").to_pylist(), flags.column("reasons").to_pylist(), strict=True))
    offensive_url = _url_of(fetched.table, OFFENSIVE)
    assert "offensive-caption" in reasons[key_of[offensive_url]]
    # the summary says how many rows were text-only and why the downloads failed
    assert summary.rows_text_only == len(fetched.dead)
    assert summary.fetch["status"]["success"] == len(fetched.good)
    assert sum(summary.fetch["failure_reasons"].values()) == len(fetched.dead)
    assert "http_404" in summary.fetch["failure_reasons"]


@pytest.mark.slow
def test_metadata_only_shard_audits_text_only_without_fetching(
    fetched: Fetched, make_config, tmp_path: Path
) -> None:
    from audit.pipelines.audit_run import run_audit

    run = tmp_path / "run"
    summary = run_audit(make_config(shards=[str(fetched.meta)], out=str(run)))
    n = fetched.table.num_rows
    assert summary.rows_in == n == summary.rows_scored + summary.rows_quarantined
    assert set(summary.image_status) == {"absent"}
    assert summary.rows_text_only == n and summary.fetch == {}  # no fetch happened
    flags = pq.read_table(run / "flags.parquet")
    reasons = dict(zip(flags.column("key").to_pylist(), flags.column("reasons").to_pylist(), strict=True))
    offensive_id = fetched.table.filter(pc.equal(fetched.table.column("TEXT"), OFFENSIVE)).column(
        "SAMPLE_ID"
    )[0]
    assert "offensive-caption" in reasons[str(offensive_id.as_py())]


def test_jpeg_fixture_images_are_real_jpegs() -> None:
    assert jpeg_bytes(3)[:2] == b"\xff\xd8" and jpeg_bytes(3) != jpeg_bytes(4)
