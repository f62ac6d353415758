"""What every reliability test checks about one run of a command: it succeeded, or it
exited 2 with exactly one line (naming the file where one is given), and in both cases
nothing partial is left behind."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd

from llm_measure.fitting.outputs import PARTIAL_MARKER

# counts of the cases each property ran, printed at the end of the session (for
# docs/reliability.md): command -> outcome -> n
COUNTS: dict[str, dict[str, int]] = {}


def count(command: str, outcome: str) -> None:
    per = COUNTS.setdefault(command, {})
    per[outcome] = per.get(outcome, 0) + 1


def run_in_process(main, argv: list[str]) -> tuple[int, str, str]:
    """Run a command's main() as the shell would, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def stop_before_sampling():
    """src.fit exactly as the command runs it, up to but not including sampling and
    writing: every check of the arguments, spec, data and outcome table runs."""
    reached = []
    with mock.patch("llm_measure.cli.fit.fit_groups", lambda *a, **k: reached.append(a)):
        yield reached


def leftovers(folder: Path, inputs: set[str]) -> list[str]:
    """Anything in ``folder`` (recursively) that is neither an input nor a finished output."""
    found = []
    for path in Path(folder).rglob("*"):
        rel = path.relative_to(folder)
        if rel.parts[0] in inputs:
            continue
        if ".partial-" in path.name or path.name == PARTIAL_MARKER or path.name.endswith(".old"):
            found.append(str(rel))
    return found


def check_outcome(
    command: str,
    code: int,
    err: str,
    *,
    out: Path | None,
    names: list[str] = (),
    allowed: tuple[int, ...] = (0, 2),
) -> str:
    """Assert the promise; return 'ok' or 'rejected' for the counts."""
    assert code in allowed, f"exit {code}, not one of {allowed}:\n{err}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one line:\n{err}"
        if names:
            assert any(n in lines[0] for n in names), f"{names} not named in {lines[0]!r}"
        if out is not None:
            assert not out.exists(), f"{out} written although the command failed"
        count(command, "rejected (exit 2, one line)")
        return "rejected"
    assert "Traceback" not in err and "internal error" not in err, err
    count(command, "accepted")
    return "ok"


def new_scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="reliab-"))


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def write_case(path: Path, content) -> Path:
    """A generated table case on disk: raw bytes as they are, a DataFrame by its suffix."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_table(content, path)
    return path


def write_table(df: pd.DataFrame, path: Path) -> None:
    """CSV, gzipped CSV, TSV or Parquet by the file's suffix."""
    name = path.name
    if name.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif name.endswith(".csv.gz"):
        df.to_csv(path, index=False, compression="gzip")
    elif name.endswith(".tsv"):
        df.to_csv(path, index=False, sep="\t")
    else:
        df.to_csv(path, index=False)


def marker_verifies(folder: Path) -> bool:
    """A finished output folder: the marker lists every file with its SHA-256."""
    from llm_measure.fitting.outputs import _sha256, read_output_marker

    marker = read_output_marker(folder)
    if marker is None:
        return False
    return all(_sha256(folder / name) == digest for name, digest in marker["files"].items())
