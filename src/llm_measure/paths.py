"""Where the package's own files are, and where a command writes by default.

The model specs ship inside the package (``llm_measure/specs``, also reachable as ``models/``
in a source checkout). Default output folders (``fits/``) and the shared data folder
(``../shared/data``) are relative to the source checkout when the package runs from one, so
``python -m src.fit`` behaves the same from any folder, and relative to the current folder
when it is installed from a wheel.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SPECS_DIR = PACKAGE_DIR / "specs"


def _checkout() -> Path | None:
    """The source checkout the package runs from (it holds pyproject.toml and
    src/llm_measure), or None for an installed wheel."""
    checkout = PACKAGE_DIR.parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "llm_measure").is_dir():
        return checkout
    return None


def workspace_root() -> Path:
    """The source checkout's root, else the current folder (an installed wheel)."""
    return _checkout() or Path.cwd()


def command_name(command: str) -> str:
    """How a user runs ``command`` (fit, report, simulate, infer) here, for messages:
    ``python -m src.report`` in a source checkout, ``llm-measure report`` when installed."""
    return f"python -m src.{command}" if _checkout() else f"llm-measure {command}"


def bundled_spec(name: str) -> Path:
    """A spec shipped with the package, by file name (``shared_bias.toml``)."""
    return SPECS_DIR / name


def resolve_spec_path(path: str | Path) -> Path:
    """``path`` itself when it exists; else, for ``models/<name>.toml`` (the spelling of the
    docs), the spec of that name shipped with the package, so the docs' commands work from
    an installed wheel too."""
    path = Path(path)
    if path.exists() or path.parent.name != "models" or not bundled_spec(path.name).is_file():
        return path
    return bundled_spec(path.name)
