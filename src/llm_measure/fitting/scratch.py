"""A private scratch folder for one command, removed when the command ends.

PyTensor's Numba backend (what nutpie compiles a PyMC model with) writes the Python source
it generates into ``tempfile.NamedTemporaryFile(delete=False)`` files and never removes
them, so every fit used to leave files in $TMPDIR. Pointing ``tempfile`` (and $TMPDIR, for
child processes such as Dask workers) at a folder of our own and deleting it at the end
keeps $TMPDIR clean whatever the libraries do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def private_tempdir(prefix: str = ".llm-measure-scratch.partial-") -> Iterator[Path]:
    """Make a fresh folder the process's temporary folder; delete it afterwards. It carries
    the partial-folder marker, so the scratch folder of a run killed with SIGKILL is deleted
    by the next run, like its partial output folder."""
    from llm_measure.fitting.outputs import mark_partial, remove_stale_partials

    remove_stale_partials(Path(tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    mark_partial(folder)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)
