"""The `mmaudit` command line. Typed errors become one line and a non-zero exit here, in one place."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from audit.errors import AuditError, ConfigError, InputFileError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Audit image-text corpora for harmful content."
)
console = Console(stderr=True)


def _exit_now(code: int) -> None:
    """End the process with ``code`` once the command has finished (its files written and closed
    by its own context managers, its output printed), without the interpreter's shutdown.

    CLI processes were killed by SIGABRT at interpreter shutdown ("terminate called without an
    active exception", a C++ std::terminate) after printing their result: ``mmaudit expand`` in 2
    and ``mmaudit evaluate sample`` in 1 of ~6 CI runs, never in 70 runs here. A native library's
    thread races its static destructors (suspects: FAISS's and Numba's two OpenMP runtimes,
    Arrow's and DuckDB's thread pools); it was not pinned down. Nothing is left to do by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _fail(err: AuditError) -> None:
    # the message quotes paths, keys and overrides written by strangers: never Rich markup
    console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


@app.command()
def audit(
    config: Annotated[Path | None, typer.Option(help="YAML config (default: built-in defaults)")] = None,
    shards: Annotated[
        list[str] | None, typer.Option(help="shard file, directory or glob; repeatable")
    ] = None,
    out: Annotated[str | None, typer.Option(help="run folder (local path or fsspec URL)")] = None,
    scheduler: Annotated[str | None, typer.Option(help="address of an existing Dask scheduler")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a config key: clip.batch_size=64")
    ] = None,
) -> None:
    """Audit a shard set and write a run folder."""
    from audit.config import load_config, parse_override
    from audit.pipelines.audit_run import run_audit

    try:
        overrides = dict(parse_override(s) for s in set_ or [])
        if shards:
            overrides["shards"] = list(shards)
        if out:
            overrides["out"] = out
        if scheduler:
            overrides["dask.scheduler"] = scheduler
        if device:
            overrides["device"] = device
        cfg = load_config(config, overrides)
        summary = run_audit(cfg, console=console)
    except AuditError as e:
        _fail(e)
    for warning in summary.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    console.print(
        f"rows in {summary.rows_in} = scored {summary.rows_scored} + quarantined {summary.rows_quarantined}; "
        f"flagged {summary.rows_flagged}"
    )
    for reason, n in summary.flags_by_reason.items():
        console.print(f"  {reason:<24} {n}", markup=False)
    if summary.rows_text_only:
        console.print(
            f"[yellow]{summary.rows_text_only} rows were audited text-only[/] (no image bytes: metadata-only "
            "input or failed downloads); image-based harms cannot be seen there. `mmaudit fetch` downloads "
            "the images of metadata shards first.",
            highlight=False,
        )
    if summary.fetch:
        console.print(f"fetch: {summary.fetch}", highlight=False, markup=False)
    print(f"run folder: {cfg.out}")


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="where to write the sample corpus")] = Path("data/sample"),
    quiet: Annotated[bool, typer.Option(help="print nothing")] = False,
) -> None:
    """Build the embedded sample corpus (deterministic; real photos from scikit-image/scikit-learn)."""
    from audit.runfolder import check_output_folder
    from audit.sample import build_sample

    try:
        check_output_folder(str(out))
    except AuditError as e:
        _fail(e)
    written = build_sample(out)
    if not quiet:
        for fmt, paths in written.items():
            print(f"{fmt:<16} {' '.join(paths)}")


@app.command()
def fetch(
    shards: Annotated[
        list[str], typer.Option(help="LAION metadata parquet: file, directory or glob; repeatable")
    ],
    out: Annotated[str, typer.Option(help="output folder: OUT/<shard_id>/ per input shard")] = "data/fetched",
    output_format: Annotated[str, typer.Option(help="parquet | webdataset")] = "parquet",
    processes: Annotated[int, typer.Option(help="img2dataset processes")] = 1,
    threads: Annotated[int, typer.Option(help="download threads per process")] = 16,
    timeout: Annotated[int, typer.Option(help="seconds per request")] = 10,
    retries: Annotated[int, typer.Option(help="retries per URL")] = 0,
    image_size: Annotated[int, typer.Option(help="resize target (keep_ratio)")] = 256,
    resize_mode: Annotated[
        str, typer.Option(help="no | keep_ratio | center_crop | border ...")
    ] = "keep_ratio",
    keep_metadata: Annotated[bool, typer.Option(help="keep every metadata column")] = True,
    ignore_robots: Annotated[bool, typer.Option(help="ignore X-Robots-Tag noai/noindex")] = False,
) -> None:
    """Download images of LAION-style metadata shards with img2dataset (resumable); audit OUT/*/ next."""
    from audit.fetch import FetchSettings, fetch_images
    from audit.runfolder import check_output_folder

    try:
        check_output_folder(out)
        settings = FetchSettings(
            output_format=output_format, processes_count=processes, thread_count=threads, timeout=timeout,
            retries=retries, image_size=image_size, resize_mode=resize_mode, keep_metadata=keep_metadata,
            disallowed_header_directives=() if ignore_robots else None,
        )  # fmt: skip
        result = fetch_images(shards, out, settings=settings)
    except AuditError as e:
        _fail(e)
    s = result.stats
    console.print(f"fetched {s.successes} of {s.count} ({s.success_rate:.1%}); failed {s.failed}")
    for reason, n in s.reasons.items():
        console.print(f"  {reason:<26} {n}")
    for p in result.outputs:
        print(p)


@app.command()
def report(
    run: Annotated[str, typer.Option(help="run folder")] = "runs/sample",
    config: Annotated[
        Path | None, typer.Option(help="YAML config whose removal: section picks the removal list's rows")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="removal.* override: removal.min_severity=high")
    ] = None,
) -> None:
    """Write RUN/report/: report.html (plots, offline), figures.json, counts.json, flags.csv/jsonl/parquet,
    the removal lists (docs/removal-lists.md) and authority_report.csv."""
    from audit.config import parse_override
    from audit.report import write_report

    try:
        overrides = dict(parse_override(s) for s in set_ or [])
        paths = write_report(run, config=str(config) if config else None, overrides=overrides)
    except AuditError as e:
        _fail(e)
    for p in paths:
        print(p)


@app.command("apply-removals")
def apply_removals_cmd(
    run: Annotated[str, typer.Argument(help="run folder (with report/removal_list.parquet)")],
    to: Annotated[str, typer.Option("--to", help="folder for the cleaned shard set (empty or new)")],
    removal_list: Annotated[
        str | None, typer.Option("--list", help="another removal list (removal_list.parquet format)")
    ] = None,
) -> None:
    """Write a cleaned copy of RUN's shard set into DEST without the removal list's rows (resumable)."""
    from audit.apply_removals import ShardOutcome, apply_removals

    def progress(o: ShardOutcome) -> None:
        console.print(f"  {o.shard_id:<24} {o.action:<16} -{o.rows_removed} of {o.rows_in}", highlight=False,
                      markup=False)  # fmt: skip

    try:
        result = apply_removals(run, to, removal_list=removal_list, progress=progress)
    except AuditError as e:
        _fail(e)
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    print(
        f"removed {result.rows_removed} rows; {result.count('rewritten')} shards rewritten, "
        f"{result.count('copied')} copied unchanged, {result.count('resumed')} already done: {to}"
    )


@app.command("export-embeddings")
def export_embeddings_cmd(
    run: Annotated[str, typer.Option(help="run folder")] = "runs/sample",
    out: Annotated[
        str, typer.Option(help="where to write the clip-retrieval folder")
    ] = "runs/sample-embeddings",
) -> None:
    """Write the run's embeddings as a clip-retrieval folder (audit it again without CLIP inference)."""
    from audit.export import export_embeddings
    from audit.runfolder import check_output_folder

    try:
        check_output_folder(out)
        rows = export_embeddings(run, out)
    except AuditError as e:
        _fail(e)
    print(f"{rows} rows with both embeddings: {out}")


@app.command()
def expand(
    run: Annotated[str, typer.Option(help="run folder (audited with neighbours enabled)")] = "runs/sample",
    seed_row_id: Annotated[
        list[str] | None,
        typer.Option("--seed-row-id", help="a seed row's row_id (<shard_id>:<row_index>); repeatable"),
    ] = None,
    seeds: Annotated[Path | None, typer.Option(help="file with one seed row_id per line")] = None,
    from_decisions: Annotated[
        bool, typer.Option(help="seed with the rows whose latest decision is confirm_harmful")
    ] = False,
    min_similarity: Annotated[float | None, typer.Option(help="cosine radius around each seed")] = None,
    k: Annotated[int | None, typer.Option(help="nearest neighbours per seed")] = None,
) -> None:
    """kNN expansion: rows near seed rows (by row_id), linked to their seed, as RUN/near_flagged.parquet."""
    from audit.pipelines.neighbours_run import expand_seeds
    from audit.review import load_decisions, load_run
    from audit.runfolder import RunFolder

    row_ids: list[str] = list(seed_row_id or [])
    try:
        if seeds:
            row_ids += _seed_keys(seeds)  # one row id per line
        if from_decisions:  # latest decision per row id
            decided = load_decisions(load_run(run))
            row_ids += [r for r, d in decided.items() if d.decision == "confirm_harmful"]
        if not row_ids:
            raise ConfigError(
                "expand: no seed rows (give --seed-row-id, --seeds FILE and/or --from-decisions)"
            )
        if min_similarity is None and k is None:
            min_similarity = 0.9
        table, missing = expand_seeds(RunFolder(run), row_ids, min_similarity=min_similarity, k=k)
    except AuditError as e:
        _fail(e)
    if missing:  # seeds are never dropped silently
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        rows = "seed row has" if len(missing) == 1 else "seed rows have"
        console.print(f"note: {len(missing)} {rows} no image embedding in this run: {shown}",
                      highlight=False, markup=False, soft_wrap=True)  # fmt: skip
    n_seeds = len(set(row_ids)) - len(missing)
    print(f"{table.num_rows} near-flagged items from {n_seeds} seeds: {run}/near_flagged.parquet")


def _seed_keys(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(f"--seeds {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise InputFileError(f"--seeds {path}: cannot read it ({why})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


@app.command()
def dashboard(
    run: Annotated[
        str | None, typer.Option(help="run folder to review (default: the latest finished run under runs/)")
    ] = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 8501,
    headless: Annotated[bool, typer.Option(help="do not open a browser")] = True,
    address: Annotated[
        str, typer.Option(help="interface to listen on; any non-loopback one needs a login")
    ] = "127.0.0.1",
    credentials: Annotated[
        Path | None,
        typer.Option(help="YAML of reviewers' bcrypt hashes (or $MMAUDIT_DASHBOARD_CREDENTIALS)"),
    ] = None,
    break_after: Annotated[
        int | None,
        typer.Option(help="revealed images per session before a break reminder (or $MMAUDIT_BREAK_AFTER)"),
    ] = None,
) -> None:
    """Serve the Streamlit review dashboard for a run folder."""
    import subprocess
    from importlib import resources

    from audit.dashboard_auth import load_auth, require_auth_if_exposed
    from audit.review.run import latest_run
    from audit.review.safety import break_after as check_break_after

    try:
        # refused before anything listens: harmful images behind a blur are not served unauthenticated
        auth = load_auth(credentials)
        require_auth_if_exposed(address, auth)
        run = run or latest_run()  # one error line now rather than a traceback in the browser
        limit = check_break_after(break_after)
    except AuditError as e:
        _fail(e)
    # the app file is located, not imported: importing a Streamlit script would run it
    app_file = str(resources.files("audit.dashboards").joinpath("app.py"))
    cmd = [
        sys.executable, "-m", "streamlit", "run", app_file,
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", str(headless).lower(),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--", "--run", run, "--break-after", str(limit),
    ]  # fmt: skip
    if credentials is not None:  # the app reads the file itself; the password variable is inherited
        cmd += ["--credentials", str(credentials.resolve())]
    login = "login required" if auth else "no login: loopback only"
    console.print(
        f"dashboard: http://{address}:{port}  (run folder {run}; {login})", highlight=False, markup=False
    )
    raise typer.Exit(subprocess.call(cmd))


evaluate_app = typer.Typer(
    no_args_is_help=True, help="Measure the flaggers on the audited corpus: sample, label, estimate."
)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("sample")
def evaluate_sample_cmd(
    run: Annotated[str, typer.Argument(help="run folder")],
    config: Annotated[Path | None, typer.Option(help="YAML config whose evaluation: section is used")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="evaluation.* override: evaluation.seed=3")
    ] = None,
    replace: Annotated[bool, typer.Option(help="replace a sample drawn with other settings")] = False,
) -> None:
    """Draw the seeded stratified labelling sample: RUN/evaluation/sample.parquet and design.json."""
    from audit.config import parse_override
    from audit.evaluation import draw_sample, open_eval_run, resolve_settings, write_sample

    try:
        overrides = dict(parse_override(s) for s in set_ or [])
        ev = open_eval_run(run)
        settings = resolve_settings(ev.manifest.config, str(config) if config else None, overrides)
        drawn = draw_sample(ev, settings)
        outcome = write_sample(ev, drawn, replace=replace)
    except AuditError as e:
        _fail(e)
    d, frame = drawn.design, drawn.design["frame"]
    print(
        f"{outcome}: {d['sampled_rows']} rows in {len(d['strata'])} strata from {frame['rows']} frame rows "
        f"(dev {d['dev_rows']}, test {d['sampled_rows'] - d['dev_rows']}, "
        f"double-labelled {d['double_label_rows']}); "
        f"not labelled: {frame['rows_never_render_excluded']} never-render rows (excluded.parquet), "
        f"{frame['rows_quarantined_excluded']} quarantined"
    )
    print(ev.sample_path)
    console.print(f"label them blind in the dashboard's Labelling page: mmaudit dashboard --run {run}",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip


@evaluate_app.command("label-planted")
def evaluate_label_planted_cmd(
    run: Annotated[str, typer.Argument(help="run folder of the sample corpus, with a drawn sample")],
    planted: Annotated[Path, typer.Option(help="the sample corpus's PLANTED.json")] = Path(
        "data/sample/PLANTED.json"
    ),
    reviewer: Annotated[str, typer.Option(help="reviewer name the labels carry")] = "planted",
) -> None:
    """Label the sample from the sample corpus's planted cases (a known truth to check the estimates
    against); double-label rows get a second label from REVIEWER-2."""
    from audit.evaluation import open_eval_run, record_labels
    from audit.evaluation.planted import planted_labels

    try:
        ev = open_eval_run(run)
        cases = _planted_cases(planted)
        labels, unknown = planted_labels(ev, cases)
        double = set(ev.sample().filter(ev.sample().column("double_label")).column("row_id").to_pylist())
        written = record_labels(ev, labels, reviewer, note="planted case")
        second = record_labels(
            ev, [x for x in labels if x[0] in double], f"{reviewer}-2", note="planted case"
        )
    except AuditError as e:
        _fail(e)
    print(f"{len(written)} labels by {reviewer}, {len(second)} second labels by {reviewer}-2; "
          f"{len(unknown)} sampled rows are in no planted case (not labelled): {ev.labels_db}")  # fmt: skip


def _planted_cases(path: Path) -> dict[str, list[str]]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"--planted {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputFileError(f"--planted {path}: not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, list) and all(isinstance(k, str) for k in v) for v in data.values()
    ):
        raise InputFileError(f"--planted {path}: expected an object of case -> list of keys")
    return data


@evaluate_app.command("report")
def evaluate_report_cmd(
    run: Annotated[str, typer.Argument(help="run folder with a labelled sample")],
    config: Annotated[Path | None, typer.Option(help="YAML config whose evaluation: section is used")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="evaluation.* override: evaluation.target_precision=0.95"),
    ] = None,
) -> None:
    """Estimate precision, recall, F1 and prevalence with intervals, curves, agreement and seed stability:
    RUN/evaluation/evaluation.json and evaluation.html (and a section of `mmaudit report`)."""
    from audit.config import parse_override
    from audit.evaluation import open_eval_run, report_settings, write_evaluation

    try:
        overrides = dict(parse_override(s) for s in set_ or [])
        ev = open_eval_run(run)
        design = ev.design()
        settings = report_settings(ev.manifest.config, design["settings"], ev.design_path,
                                   str(config) if config else None, overrides)  # fmt: skip
        doc, paths = write_evaluation(ev, settings)
    except AuditError as e:
        _fail(e)
    labels = doc["labels"]
    if not labels["usable_rows"]:
        console.print(
            "[bold yellow]warning:[/] no usable label yet: every estimate is empty", highlight=False
        )
    pr = doc["protocol"]
    print(f"{labels['usable_rows']} labelled rows used ({labels['unsure_rows']} unsure left out); thresholds "
          f"chosen on dev ({pr['dev_rows']}), estimates on test ({pr['test_rows']})")  # fmt: skip

    def shown(p: dict) -> str:
        if p["estimate"] is None:
            return "   -   [0-1]"
        return f"{p['estimate']:.2f} [{p['low']:.2f}-{p['high']:.2f}]"

    for r in doc["rules"]:
        t = r["test"]
        print(f"  {r['rule']:<28} {r['category']:<10} precision {shown(t['precision'])}  "
              f"recall {shown(t['recall'])}")  # fmt: skip
    for p in paths:
        print(p)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the terminal shows warnings; RUN/logs has the rest
        handler.setLevel(logging.WARNING)
    try:
        app()  # click ends every command, finished or failed, with SystemExit
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)  # what SystemExit would have printed
        _exit_now(code)


if __name__ == "__main__":
    main()
