"""What ``python -m src.fit`` writes: posterior.nc, summary.csv (report.md: fitting/fit_report.py).

Everything is written into a hidden partial folder beside the target and moved into place
at the end, so an interrupted or failed fit never leaves a half-written output folder (see
:func:`staged_output`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import xarray as xr

from llm_measure.errors import (
    InputError,
    output_complete,
    pid_alive,
    raise_if_interrupted,
    signals_deferred,
)

# in every finished output folder: what wrote it and the SHA-256 of each file, so that
# --overwrite deletes only the toolkit's own folders and src.report can tell a corrupt file
OUTPUT_MARKER = ".llm-measure-output.json"
# in every partial folder: the id of the process writing it, so a later run can tell a
# stale one (its writer was killed with SIGKILL) from one another run is still writing
PARTIAL_MARKER = ".llm-measure-partial.json"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (src.report checks that it reads the data the fit read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_sha256 = file_sha256  # its older name (fit_folder.py, the reliability tests)


def read_output_marker(folder: Path) -> dict | None:
    """The marker of a finished output folder, or None where there is none (or it is bad)."""
    try:
        marker = json.loads((Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None


def written_by_toolkit(folder: Path) -> bool:
    """Whether ``folder`` is an output folder the toolkit wrote: it has the marker, or it is
    an older folder with a fit's fit.json, a report's report.html + report.md, or a
    simulation's truth.json + outcome.csv."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    if read_output_marker(folder) is not None:
        return True
    try:
        info = json.loads((folder / "fit.json").read_text(encoding="utf-8"))
        if isinstance(info, dict) and {"spec", "sampler"} <= set(info):
            return True
    except (OSError, ValueError):
        pass
    return ((folder / "report.html").is_file() and (folder / "report.md").is_file()) or (
        (folder / "truth.json").is_file() and (folder / "outcome.csv").is_file()
    )


def remove_stale_partials(parent: Path) -> list[Path]:
    """Delete the partial folders in ``parent`` whose writer no longer runs (killed with
    SIGKILL, or the machine went down); only folders with the toolkit's partial marker."""
    removed: list[Path] = []
    try:
        candidates = [
            p for p in Path(parent).iterdir() if p.name.startswith(".") and ".partial-" in p.name
        ]
    except OSError:
        return removed
    for folder in candidates:
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            marker = json.loads((folder / PARTIAL_MARKER).read_text(encoding="utf-8"))
            pid, host = int(marker["pid"]), marker.get("host")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours: leave it alone
        if host not in (None, socket.gethostname()):
            continue  # written from another machine (a shared disk): its pid means nothing here
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def mark_partial(folder: Path) -> None:
    (folder / PARTIAL_MARKER).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8"
    )


def _cannot_write(target: Path, exc: OSError) -> InputError:
    return InputError(
        f"cannot write the output folder here: {exc.strerror or exc}", file=target, column="--out"
    )


@contextlib.contextmanager
def staged_output(target: Path, overwrite: bool, kind: str = "fit") -> Iterator[Path]:
    """Yield a hidden partial folder; on success it replaces ``target`` in one rename.

    - ``target`` may be replaced only with ``overwrite`` and only if the toolkit wrote it
      (or it is an empty folder): never a file, a link or a folder of the user's own;
    - on any exception or signal the partial folder is deleted; partial folders left by
      an earlier run that was killed outright are deleted by the next one;
    - the finished folder holds :data:`OUTPUT_MARKER` with each file's SHA-256.
    """
    target = Path(target)
    if target.is_symlink() or target.exists():
        if not overwrite:
            raise InputError(
                "output folder already exists (pass --overwrite to replace it)",
                file=target,
                column="--out",
            )
        if target.is_symlink() or not target.is_dir():
            raise InputError(
                "is a file or a link, not an output folder; --overwrite replaces "
                "only an output folder the toolkit wrote",
                file=target,
                column="--out",
            )
        try:
            empty = not any(target.iterdir())
        except OSError as exc:
            raise _cannot_write(target, exc) from None
        if not empty and not written_by_toolkit(target):
            raise InputError(
                f"was not written by llm-measure (no {OUTPUT_MARKER}); "
                "--overwrite replaces only an output folder the toolkit wrote: "
                "choose a new --out",
                file=target,
                column="--out",
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        mark_partial(tmp)
        yield tmp
        with signals_deferred():  # the check and the renames must not be cut in half
            raise_if_interrupted()
            files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != PARTIAL_MARKER)
            (tmp / OUTPUT_MARKER).write_text(
                json.dumps(
                    {
                        "kind": kind,
                        "files": {str(p.relative_to(tmp)): file_sha256(p) for p in files},
                    },
                    indent=1,
                ),
                encoding="utf-8",
            )
            (tmp / PARTIAL_MARKER).unlink()
            if target.is_symlink() or target.exists():
                old = Path(
                    tempfile.mkdtemp(prefix=f".{target.name}.partial-old-", dir=target.parent)
                )
                mark_partial(old)  # a kill between the renames leaves it to be cleaned
                target.rename(old / "replaced")
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(target)
            output_complete()
    except BaseException as exc:
        with signals_deferred():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(target)  # a failed write (a full disk) names the output
        raise


def write_netcdf(tree: xr.DataTree, path: Path) -> None:
    """Write NetCDF (HDF5) through memory: HDF5 writing straight to a disk that fills up
    crashes the process (a segmentation fault in h5py); a plain write fails cleanly with
    OSError (no space left on the device), which the command reports in one line."""
    data = tree.to_netcdf(engine="h5netcdf")
    with open(path, "wb") as f:
        f.write(data)


def netcdf_ready(tree: xr.DataTree) -> xr.DataTree:
    """Drop variables NetCDF cannot store (object dtype, e.g. nutpie's divergence messages)."""
    out = {}
    for node in tree.subtree:
        ds = node.to_dataset()
        keep = [v for v in ds.data_vars if ds[v].dtype != object]
        out[node.path] = ds[keep]
    return xr.DataTree.from_dict(out)


def write_posterior(trees: dict[str, xr.DataTree], path: Path) -> None:
    """One node per fit group (per item for a G-study): ``open_datatree(path)['CLPC']``."""
    nodes = {}
    for label, tree in trees.items():
        for node in netcdf_ready(tree).subtree:
            if node.path == "/":
                continue
            nodes[f"/{label}{node.path}"] = node.to_dataset()
    write_netcdf(xr.DataTree.from_dict(nodes), path)


def max_rhat_of(tree: xr.DataTree, var_names: list[str]) -> float:
    """Moved to :func:`llm_measure.fitting.sampling.max_rhat_of`, beside the gate."""
    from llm_measure.fitting.sampling import max_rhat_of as moved

    return moved(tree, var_names)
