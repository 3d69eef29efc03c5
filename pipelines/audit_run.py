"""The audit as a Dask pipeline: validate, one task per shard not yet done, then a merge.

This package is the only code that imports dask.distributed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator

import dask
from dask.distributed import Client, LocalCluster, as_completed
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from audit.config import AuditConfig, DaskSettings
from audit.energy import EnergyMeter
from audit.errors import (
    AuditError,
    ConfigError,
    EmbeddingMismatchError,
    ModelLoadError,
    OutputPathError,
    RuleError,
    ShardsFailedError,
)
from audit.finalize import finalize_run, now, write_manifest
from audit.model_cache import models_cached
from audit.pipelines.neighbours_run import merge_neighbours, neighbours_pending, run_neighbours
from audit.rules import load_rules
from audit.runfolder import RunFolder, check_output_folder
from audit.schemas import Manifest, ShardRecord, Summary
from audit.shard_audit import audit_shard, warm_models
from audit.shards import ShardSpec, discover_shards, shard_fingerprint, validate_shard

log = logging.getLogger(__name__)
# Errors that mean every shard would fail the same way: stop the run instead of retrying shards.
RUN_FATAL = (ModelLoadError, ConfigError, RuleError, EmbeddingMismatchError)


@contextlib.contextmanager
def run_log(run: RunFolder) -> Iterator[None]:
    """Driver and Dask logs go to RUN/logs/audit.log; the terminal shows progress and warnings only."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if run.fs.protocol not in ("file", ("file", "local")):
        yield
        return
    run.fs.makedirs(run.path("logs"), exist_ok=True)
    handler = logging.FileHandler(run.path("logs", "audit.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(min(previous, logging.INFO))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


EVENT_LOOP_TICK = "1s"  # LocalCluster's event-loop health checks (Dask's default: 20ms)


@contextlib.contextmanager
def dask_client(settings: DaskSettings, n_tasks: int) -> Iterator[Client]:
    """Join ``settings.scheduler`` or start a LocalCluster sized to the machine and the work, listening
    on ``settings.host`` (loopback by default), its dashboard on ``settings.dashboard_address``."""
    if settings.scheduler:
        try:
            client = Client(settings.scheduler, timeout="20s")
        except (OSError, ValueError, TypeError) as e:  # unreachable, or not an address at all
            raise ConfigError(
                f"dask.scheduler: cannot reach {settings.scheduler} ({_first_line(e)})"
            ) from None
        with client:
            yield client
        return
    workers = settings.n_workers or max(1, min(os.cpu_count() or 1, n_tasks))
    quiet = {
        # Dask's statistical profiler walks each worker thread's stack every 10 ms (measured: ~1.4%
        # of a worker's CPU on bench-e2e); only the dashboard's profile page reads it
        "distributed.worker.profile.enabled": settings.dashboard_address is not None,
        # every server (scheduler, nannies, workers) checks its event loop's health every 20 ms by
        # default: measured ~12% of one core with the cluster idle, each tick also taking the GIL
        # from the task thread. A blocked loop is still reported (the 3 s warning limit stays)
        "distributed.admin.tick.interval": EVENT_LOOP_TICK,
    }
    try:
        with dask.config.set(quiet):  # the nannies pass it on to the worker processes they start
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=settings.threads_per_worker,
                processes=True,
                memory_limit=settings.memory_limit,
                # ":0" would bind the dashboard to every interface while its link says 127.0.0.1
                host=settings.host,
                # off: the scheduler still serves /health and /metrics over HTTP, on a loopback port
                dashboard_address=settings.dashboard_address or "127.0.0.1:0",
                scheduler_kwargs={"dashboard": settings.dashboard_address is not None},
                silence_logs=logging.CRITICAL,  # task errors are recorded per shard instead
            )
    except (OSError, RuntimeError, ValueError) as e:  # mostly an unusable host or dashboard address
        raise ConfigError(
            f"cannot start a Dask LocalCluster with dask.host={settings.host}, "
            f"dask.dashboard_address={settings.dashboard_address} ({_first_line(e)})"
        ) from None
    with cluster, Client(cluster) as client:
        yield client


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def dashboard_link(client: Client, settings: DaskSettings) -> str | None:
    """The Dask dashboard's URL; None when it is turned off (Client.dashboard_link would still
    format a link to the scheduler's HTTP port)."""
    if settings.scheduler is None and settings.dashboard_address is None:
        return None
    return client.dashboard_link or None


def _already_done(run: RunFolder, spec: ShardSpec, cfg: AuditConfig) -> ShardRecord | None:
    """A shard is skipped only if it finished under the same scoring config and its input files
    are unchanged (same fingerprint): a changed shard is audited again."""
    path = run.shard_record(spec.shard_id)
    if not run.exists(path):
        return None
    try:
        record = ShardRecord.model_validate(run.read_json(path))
    except (ValueError, OSError) as e:  # a damaged record proves nothing: audit the shard again
        log.warning("shard record %s cannot be read (%s); auditing the shard again", path, e)
        return None
    same = (record.config_hash, record.path, record.fingerprint) == (
        cfg.scoring_hash(),
        spec.path,
        spec.fingerprint,
    )
    if record.status != "done" or not same:
        return None
    if record.tallies is None:
        log.info("shard record %s has no tallies (an older version wrote it); auditing the shard again", path)
        return None
    return record


def _failed(spec: ShardSpec, cfg: AuditConfig, err: BaseException) -> ShardRecord:
    return ShardRecord(
        shard_id=spec.shard_id,
        path=spec.path,
        format=spec.format,
        sha256="",
        status="failed",
        error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
        config_hash=cfg.scoring_hash(),
        fingerprint=spec.fingerprint,
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_audit(cfg: AuditConfig, *, console: Console | None = None) -> Summary:
    """Validate everything up front, audit the shards not yet done, merge, and summarise.

    Bad input found after the run folder was created (an ``AuditError`` with exit code 2, e.g.
    embeddings of another dimension) leaves no run behind: a folder this run created is removed;
    an existing one keeps its finished shards for a rerun and its manifest says ``failed``.
    """
    console = console or Console(stderr=True)
    check_output_folder(cfg.out)
    load_rules(cfg.rules)  # cheap: a broken rules file fails before any shard is read
    meter = EnergyMeter(cfg.energy.cpu_watts_per_core, cfg.energy.grid_gco2e_per_kwh, cfg.energy.gpu_watts)
    t0 = time.perf_counter()
    specs = discover_shards(cfg.shards, out=cfg.out)  # refuses --out inside an input folder
    with _progress(console) as progress:
        task = progress.add_task("validate", total=len(specs), unit="shards", rate="")
        checked = []
        for spec in specs:
            validate_shard(spec)
            checked.append(dataclasses.replace(spec, fingerprint=shard_fingerprint(spec)))
            progress.advance(task)
    run = RunFolder(cfg.out)
    new_folder = not run.exists(run.root)
    try:
        return _audit(run, cfg, checked, console, meter, t0)
    except AuditError as e:
        if e.exit_code == 2:  # exit 3 (some shards failed) is a partial run, kept as such
            _abandon(run, e, new_folder=new_folder)
        raise


def _abandon(run: RunFolder, err: AuditError, *, new_folder: bool) -> None:
    """Leave nothing that looks like a run after bad input stopped it. A shard task that was already
    running on an external cluster (--scheduler) cannot be stopped and may still write its own files."""
    try:
        if new_folder:
            if run.exists(run.root):
                run.fs.rm(run.root, recursive=True)
        elif run.exists(run.manifest):
            doc = {**run.read_json(run.manifest), "status": "failed", "error": str(err), "finished_at": now()}
            run.write_json(run.manifest, Manifest.model_validate(doc))
    except (OSError, ValueError) as e:  # the user still gets the error that stopped the run
        log.warning("could not clean up %s after the error: %s", run.url, e)


def _audit(
    run: RunFolder, cfg: AuditConfig, specs: list[ShardSpec], console: Console, meter: EnergyMeter, t0: float
) -> Summary:
    try:
        if run.exists(run.summary):
            run.fs.rm(run.summary)  # a summary only ever describes a finished run
        if stale := run.remove_stale_temp_files():
            log.info("removed %d temp files left by an interrupted run", stale)
    except OSError as e:
        raise OutputPathError(f"--out {cfg.out}: cannot write the run folder ({e})") from None
    created_at = now()
    done = {s.shard_id: r for s in specs if (r := _already_done(run, s, cfg))}
    todo = [s for s in specs if s.shard_id not in done]
    records: dict[str, ShardRecord] = dict(done)
    scheduler = cfg.dask.scheduler or "LocalCluster"
    try:
        write_manifest(run, cfg, list(records.values()), created_at=created_at, scheduler=scheduler,
                       timings={}, status="running", finished=False)  # fmt: skip
    except OSError as e:
        raise OutputPathError(f"--out {cfg.out}: cannot write the run folder ({e})") from None
    if done:
        console.print(f"resume: {len(done)} of {len(specs)} shards already done and unchanged, skipping them")
    timings: dict[str, float] = {"validate": round(time.perf_counter() - t0, 3)}
    neighbour_counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        clients: list[Client] = []

        def client() -> Client:  # started on first need: a rerun with nothing to do starts no cluster
            if not clients:
                stack.enter_context(run_log(run))
                clients.append(stack.enter_context(dask_client(cfg.dask, max(1, len(todo)))))
                if link := dashboard_link(clients[0], cfg.dask):
                    console.print(f"Dask dashboard: {link}")
            return clients[0]

        if todo:
            t1 = time.perf_counter()
            log.info("auditing %d shards (%d skipped) on %s", len(todo), len(done), scheduler)
            cluster = client()
            timings["cluster_start"] = round(time.perf_counter() - t1, 3)  # part of "shards"
            records.update(_run_tasks(cluster, todo, cfg, run, console, timings))
            timings["shards"] = round(time.perf_counter() - t1, 3)
        if cfg.neighbours.enabled:
            t3 = time.perf_counter()
            current = [records[s.shard_id] for s in specs]
            if neighbours_pending(run, current, cfg.neighbours):
                console.print(
                    "neighbours: FAISS index, near-duplicates, clusters and outliers over the corpus"
                )
                neighbour_counts = run_neighbours(client(), run, cfg, current)
            else:
                neighbour_counts = merge_neighbours(run, [r for r in current if r.status == "done"])
            timings["neighbours"] = round(time.perf_counter() - t3, 3)
    ordered = [records[s.shard_id] for s in specs]
    with _progress(console) as progress:
        task = progress.add_task("finalize", total=1, unit="merge", rate="")
        summary = finalize_run(
            run, cfg, ordered, created_at=created_at, scheduler=scheduler,
            timings=timings, started=t0,  # finalize_run adds its own seconds and the total
            energy=meter.finish(used_gpu=any(r.device == "cuda" for r in ordered),
                                external_workers=bool(cfg.dask.scheduler)),
            neighbours=neighbour_counts,
        )  # fmt: skip
        progress.advance(task)
    failed = [r for r in ordered if r.status == "failed"]
    if failed:
        lines = "; ".join(f"{r.path}: {r.error}" for r in failed)
        raise ShardsFailedError(
            f"{len(failed)} of {len(specs)} shards failed ({lines}); run folder: {cfg.out}"
        )
    return summary


# formats whose shards never hold image bytes: their rows are small, so batches can be larger
NO_IMAGE_FORMATS = ("laion_metadata", "clip_retrieval")


def batch_rows_for(spec: ShardSpec, cfg: AuditConfig) -> int:
    """Rows per batch for one shard: ``dask.batch_rows``, or ``dask.batch_rows_without_images``
    for a format that carries no image bytes."""
    if spec.format in NO_IMAGE_FORMATS:
        return cfg.dask.batch_rows_without_images
    return cfg.dask.batch_rows


def _run_tasks(
    client: Client,
    todo: list[ShardSpec],
    cfg: AuditConfig,
    run: RunFolder,
    console: Console,
    timings: dict[str, float],
) -> dict[str, ShardRecord]:
    # One worker builds the models first: on a cold cache it embeds the prompt bank once and caches
    # it (audit.clip_info), so the other workers load it instead of each encoding it; a model that
    # cannot load stops the run here, before any shard starts.
    # With the bank already cached (any run after the first), every worker warms up at once.
    warm = [client.submit(warm_models, cfg, key=f"warm-models-{cfg.scoring_hash()}", pure=False)]
    if client.submit(models_cached, cfg, key=f"models-cached-{cfg.scoring_hash()}", pure=False).result():
        warm = [
            client.submit(warm_models, cfg, key=f"warm-models-{cfg.scoring_hash()}-{i}", pure=False,
                          workers=[address], allow_other_workers=False)
            for i, address in enumerate(client.scheduler_info()["workers"])
        ]  # fmt: skip
    t_warm = time.perf_counter()
    try:
        for w in warm:
            w.result()
    except RUN_FATAL as e:
        raise type(e)(str(e)) from None
    timings["warm_up"] = round(time.perf_counter() - t_warm, 3)  # models on the workers, part of "shards"
    # pure=False: a rerun must execute again, never reuse a result cached under the same key
    futures = {
        client.submit(audit_shard, spec, cfg, run.url, batch_rows_for(spec, cfg), retries=cfg.dask.retries,
                      key=f"audit-{spec.shard_id}-{cfg.scoring_hash()}", pure=False): spec
        for spec in todo
    }  # fmt: skip
    # the merge's imports (DuckDB; scipy.stats, 0.7 s of CPU, for the cascade's intervals only) load
    # while the driver only waits for shards, not after them
    threading.Thread(
        target=_import_for_merge, args=(cfg.cascade.enabled,), name="mmaudit-merge-imports", daemon=True
    ).start()
    out: dict[str, ShardRecord] = {}
    with _progress(console) as progress:
        task = progress.add_task("audit", total=len(todo), unit="shards", rate="")
        rows, start = 0, time.perf_counter()
        for fut in as_completed(list(futures)):
            spec = futures[fut]
            try:
                record = fut.result()
            except RUN_FATAL as e:
                for other in futures:
                    other.cancel()
                raise type(e)(str(e)) from None
            except Exception as e:  # recorded per shard: the other shards go on
                record = _failed(spec, cfg, e)
                run.write_json(run.shard_record(spec.shard_id), record)
                log.error(
                    "shard %s failed after %d retries: %s", spec.shard_id, cfg.dask.retries, record.error
                )
            out[spec.shard_id] = record
            rows += record.rows_in
            _advance(progress, task, rows, start)
    return out


def _import_for_merge(cascade: bool) -> None:
    with contextlib.suppress(ImportError):
        import duckdb  # noqa: F401

        if cascade:
            import scipy.stats  # noqa: F401


def _advance(progress: Progress, task: TaskID, rows: int, start: float) -> None:
    rate = rows / max(time.perf_counter() - start, 1e-9)
    progress.update(task, advance=1, rate=f"{rows:,} rows {rate:,.0f} rows/s")
