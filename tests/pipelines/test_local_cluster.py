"""The LocalCluster the audit starts listens on 127.0.0.1 only: scheduler, nannies, workers and the
Dask dashboard (whose link is printed)."""

from __future__ import annotations

import urllib.error
import urllib.request

import psutil
import pytest

from audit.config import DaskSettings
from audit.pipelines.audit_run import dashboard_link, dask_client


def _listening(procs: list[psutil.Process]) -> set[tuple[int, str, int]]:
    return {
        (p.pid, c.laddr.ip, c.laddr.port)
        for p in procs
        for c in p.net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_local_cluster_listens_on_loopback_only() -> None:
    me = psutil.Process()
    before = _listening([me, *me.children(recursive=True)])
    settings = DaskSettings(n_workers=1)
    with dask_client(settings, n_tasks=1) as client:
        opened = _listening([me, *me.children(recursive=True)]) - before
        link = dashboard_link(client, settings)
        assert link is not None and _status(link) == 200
    assert len({pid for pid, _, _ in opened}) >= 2  # this process (scheduler, nanny) and a worker
    assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened
    assert link.startswith("http://127.0.0.1:")
    port = int(link.split(":")[2].split("/")[0])
    assert (me.pid, "127.0.0.1", port) in opened  # the printed link is where it listens


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_dask_dashboard_can_be_turned_off(host: str) -> None:
    me = psutil.Process()
    before = _listening([me])
    settings = DaskSettings(n_workers=1, host=host, dashboard_address=None)
    with dask_client(settings, n_tasks=1) as client:
        opened = _listening([me]) - before
        assert dashboard_link(client, settings) is None  # no link printed
        port = client.scheduler_info()["services"]["dashboard"]  # the scheduler's plain HTTP routes
        assert _status(f"http://127.0.0.1:{port}/health") == 200
    assert (me.pid, "127.0.0.1", port) in opened
    assert {ip for _, ip, _ in opened} == {"127.0.0.1"}


def test_a_host_that_cannot_be_bound_names_the_key() -> None:
    from audit.errors import ConfigError

    with (
        pytest.raises(
            ConfigError, match=r"cannot start a Dask LocalCluster with dask\.host=no-such-host\.invalid"
        ),
        dask_client(DaskSettings(n_workers=1, host="no-such-host.invalid"), n_tasks=1),
    ):
        pass


@pytest.mark.parametrize(("dashboard", "profiled"), [(None, False), ("127.0.0.1:0", True)])
def test_workers_sample_their_own_stacks_only_when_the_dashboard_can_show_it(
    dashboard: str | None, profiled: bool
) -> None:
    # Dask's statistical profiler walks every worker thread's stack 100 times a second (~1.4% of
    # a bench-e2e worker's CPU); its only consumer is the dashboard's profile page
    settings = DaskSettings(n_workers=1, dashboard_address=dashboard)
    with dask_client(settings, n_tasks=1) as client:
        # a lambda travels by value (the workers cannot import this test module); client.run
        # passes the worker by the parameter's name
        running = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        assert set(running.values()) == {profiled}


def test_every_server_of_the_local_cluster_checks_its_event_loop_once_a_second() -> None:
    # Dask's default 20 ms tick costs ~12% of a core with the cluster idle; the 3 s warning limit
    # for a blocked loop is unchanged, so a blocked loop is still reported
    import dask

    callers = dask.config.get("distributed.admin.tick.interval")
    with dask_client(DaskSettings(n_workers=2, dashboard_address=None), n_tasks=2) as client:
        workers = client.run(lambda dask_worker: dask_worker.periodic_callbacks["tick"].callback_time)
        scheduler = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.periodic_callbacks["tick"].callback_time
        )
        nannies = [n.periodic_callbacks["tick"].callback_time for n in client.cluster.workers.values()]
        limits = client.run(lambda: __import__("dask").config.get("distributed.admin.tick.limit"))
    assert len(workers) == 2 and len(nannies) == 2
    assert set(workers.values()) == {1000} and scheduler == 1000 and set(nannies) == {1000}
    assert set(limits.values()) == {dask.config.get("distributed.admin.tick.limit")}
    assert dask.config.get("distributed.admin.tick.interval") == callers  # the caller's config untouched
