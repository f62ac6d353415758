"""Independent fits fanned out: in this process, or on Dask distributed.

Per item, per simulation-based-calibration replicate, per bootstrap: the fits do not talk to
each other, so they can run anywhere. ``run_tasks`` runs a picklable function over a list of
arguments either one after another here, or on a Dask cluster — a local one of ``workers``
processes by default, or an existing scheduler at ``scheduler`` (``tcp://host:8786``) — and
returns the results in the order of the tasks, with a progress bar. ``on_result(k, result)``
is called as each task finishes (in completion order), so a caller can save results as they
come and an interrupted run loses only the fits in flight.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm


def cores_per_task(workers: int | None) -> int:
    """Cores each fit may use so that ``workers`` fits in parallel do not oversubscribe."""
    return max(1, (os.cpu_count() or 1) // max(1, workers or 1))


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    use_dask: bool = False,
    scheduler: str | None = None,
    workers: int = 2,
    label: str = "fits",
    on_result: Callable[[int, Any], None] | None = None,
) -> list:
    if not use_dask and scheduler is None:
        results: list = []
        for k, task in enumerate(tqdm(tasks, desc=label, file=sys.stderr, disable=len(tasks) < 2)):
            results.append(fn(*task))
            if on_result is not None:
                on_result(k, results[-1])
        return results
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # one thread per worker process: each fit runs its own chains
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    print(
        f"dask: {len(tasks)} {label} on {scheduler or f'a local cluster of {workers} workers'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        futures = [client.submit(fn, *task, pure=False) for task in tasks]
        order = {f.key: k for k, f in enumerate(futures)}
        results = [None] * len(tasks)
        for future in tqdm(as_completed(futures), total=len(futures), desc=label, file=sys.stderr):
            k = order[future.key]
            results[k] = future.result()
            if on_result is not None:
                on_result(k, results[k])
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
