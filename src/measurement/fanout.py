"""Independent fits fanned out: in this process, or on Dask distributed.

Per item, per simulation-based-calibration replicate, per bootstrap: the fits do not talk to
each other, so they can run anywhere. ``run_tasks`` runs a picklable function over a list of
arguments either one after another here, or on a Dask cluster — a local one of ``workers``
processes by default, or an existing scheduler at ``scheduler`` (``tcp://host:8786``) — and
returns the results in the order of the tasks, with a progress bar.
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


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], *, use_dask: bool = False,
              scheduler: str | None = None, workers: int = 2, label: str = "fits") -> list:
    if not use_dask and scheduler is None:
        return [fn(*task) for task in tasks]
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # one thread per worker process: each fit runs its own chains
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    print(f"dask: {len(tasks)} {label} on {scheduler or f'a local cluster of {workers} workers'}",
          file=sys.stderr, flush=True)
    try:
        futures = [client.submit(fn, *task, pure=False) for task in tasks]
        order = {f.key: k for k, f in enumerate(futures)}
        results: list = [None] * len(tasks)
        for future in tqdm(as_completed(futures), total=len(futures), desc=label,
                           file=sys.stderr):
            results[order[future.key]] = future.result()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
