"""Where (workload x configuration) replay jobs run: a local fork pool or a running Dask cluster.

``--executor local`` forks ``--jobs`` worker processes that inherit every load model (nothing large
is pickled per job). ``--executor dask://HOST:PORT`` connects to a running dask.distributed
scheduler, ships each load model to every worker once (``scatter(broadcast=True)``) and maps the
jobs; a job carries only its configuration and returns only its scores (and a timeline when the
caller keeps it). The engine is deterministic, so both give identical results. Workers must run the
same version of this package (``pip install 'autoscaler[distributed]'`` on every worker).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from sim.replay.engine import Timeline
from sim.replay.load import WorkloadLoad
from sim.replay.sweep import Config, replay_config, score_run

#: (load key, configuration, keep its timeline)
Job = tuple[str, Config, bool]
#: (load key, configuration index, scores, sync errors, error, timeline when kept)
Result = tuple[str, int, dict[str, Any], list[str], str | None, Timeline | None]

_DASK = re.compile(r"^dask://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def parse_executor(text: str) -> str:
    """``local`` or ``dask://HOST:PORT`` (the argparse type of ``--executor``)."""
    if text == "local":
        return text
    m = _DASK.match(text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"--executor {text!r}: want local or dask://HOST:PORT (a dask.distributed scheduler)")
    return text


def executor_flag(text: str) -> str:
    """argparse type of ``--executor``."""
    import argparse

    try:
        return parse_executor(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--executor {text!r}: ")) from None


def run_job(load: WorkloadLoad, c: Config, keep: bool, dispersion: str, seed: int) -> tuple[
        dict[str, Any], list[str], str | None, Timeline | None]:
    """Replay and score one configuration; an exception becomes that configuration's error."""
    try:
        tl = replay_config(load, c, dispersion=dispersion, seed=seed)
        scores = score_run(load, tl, c.hpa)
    except Exception as e:  # one bad configuration never stops the sweep
        return {}, [], f"{type(e).__name__}: {e}", None
    return scores, tl.errors, None, tl if keep else None


#: what every local worker holds (set before the fork, inherited)
_LOCAL: dict[str, Any] = {}


def _local_one(job: Job) -> Result:
    key, c, keep = job
    return (key, c.index, *run_job(_LOCAL["loads"][key], c, keep, _LOCAL["dispersion"], _LOCAL["seed"]))


def _run_local(loads: dict[str, WorkloadLoad], jobs: list[Job], dispersion: str, seed: int,
               n_jobs: int | None, on_start: Callable[[], None] | None) -> Iterator[Result]:
    _LOCAL.update(loads=loads, dispersion=dispersion, seed=seed)
    n = max(1, min(n_jobs or os.cpu_count() or 1, len(jobs) or 1))
    if n == 1:
        if on_start is not None:
            on_start()
        yield from map(_local_one, jobs)
        return
    # fork: the workers inherit _LOCAL (the loads) instead of receiving them pickled
    with multiprocessing.get_context("fork").Pool(n) as pool:
        if on_start is not None:
            on_start()
        yield from pool.imap_unordered(_local_one, jobs)


def _dask_one(load: WorkloadLoad, key: str, c: Config, keep: bool, dispersion: str, seed: int) -> Result:
    return (key, c.index, *run_job(load, c, keep, dispersion, seed))


def _run_dask(address: str, loads: dict[str, WorkloadLoad], jobs: list[Job], dispersion: str, seed: int,
              on_start: Callable[[], None] | None) -> Iterator[Result]:
    from autoscaler.extras import require

    require("sim replay --executor dask://", "distributed")
    from distributed import Client, as_completed

    url = "tcp://" + address.removeprefix("dask://")
    try:  # the connect timeout is Dask's own setting (distributed.comm.timeouts.connect, default 30s)
        client = Client(url)
    except (OSError, TimeoutError) as e:
        raise ValueError(f"--executor {address}: cannot connect to the Dask scheduler: {e}") from None
    try:
        if not client.scheduler_info().get("workers"):
            raise ValueError(f"--executor {address}: the Dask cluster has no workers")
        keys = sorted({k for k, _, _ in jobs})
        # Each load travels to every worker once; jobs refer to it by its future.
        remote = dict(zip(keys, client.scatter([loads[k] for k in keys], broadcast=True, hash=False), strict=True))
        futures = [client.submit(_dask_one, remote[k], k, c, keep, dispersion, seed, pure=False)
                   for k, c, keep in jobs]
        if on_start is not None:
            on_start()
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as e:  # the worker could not run the job at all (missing package, lost worker)
                raise ValueError(f"--executor {address}: a Dask job failed: {type(e).__name__}: {e} "
                                 "(every worker needs this package installed at the same version)") from None
    finally:
        client.close()


def run_jobs(loads: dict[str, WorkloadLoad], jobs: list[Job], *, executor: str = "local", dispersion: str = "even",
             seed: int = 0, n_jobs: int | None = None, on_start: Callable[[], None] | None = None) -> Iterator[Result]:
    """Run every job on ``executor`` and yield the results as they complete (in no fixed order)."""
    if executor == "local":
        return _run_local(loads, jobs, dispersion, seed, n_jobs, on_start)
    return _run_dask(parse_executor(executor), loads, jobs, dispersion, seed, on_start)
