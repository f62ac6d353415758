"""The built wheel installs only ``llm_measure``, carries its package data, and its console
command runs the embedded default from an unrelated folder (issue 14, item 5).

The wheel is built from a copy of this checkout (so the checkout gets no ``build/``) and
installed into a fresh virtual environment without downloading anything: the fresh
environment sees this environment's third-party packages through a ``.pth`` file naming their
site-packages folder. A folder added by a ``.pth`` line is not a site directory, so the
``.pth`` files inside it (among them the editable install's, which would put a checkout's
``src/`` on the path) are not processed; the test checks that ``import llm_measure`` resolves
to the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "llm_measure"


def _run(args: list, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command of the fresh environment as a user would: no PYTHONPATH, no active venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout (tail):\n{result.stdout[-3000:]}\nstderr (tail):\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout's pyproject.toml, README.md and src/."""
    tree = tmp_path_factory.mktemp("source")
    shutil.copy2(ROOT / "pyproject.toml", tree)
    shutil.copy2(ROOT / "README.md", tree)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    out = tmp_path_factory.mktemp("wheelhouse")
    _ok(
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", out, tree],
            cwd=tree,
        )
    )  # fmt: skip
    (built,) = out.glob("llm_measure-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment holding the wheel; its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv))
    python = venv / "bin" / "python"
    fresh_site = _ok(
        _run([python, "-c", "import site; print(site.getsitepackages()[0])"], cwd=venv)
    ).strip()
    # this environment's third-party packages (pymc, nutpie, ...), appended after the fresh
    # site-packages, so the installed llm_measure comes first
    (Path(fresh_site) / "_source_environment.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n"
    )
    _ok(
        _run(
            [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
             "--no-index", "-q", wheel],
            cwd=venv,
        )
    )  # fmt: skip
    return venv / "bin"


def test_wheel_holds_only_the_library_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"llm_measure", f"{wheel.name.split('-py3')[0]}.dist-info"}, top
    # every spec, rubric and R script of the source tree, and the typing marker
    for pattern in ("specs/*.toml", "inference/rubrics/*.toml", "families/gstudy/*.R"):
        files = sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.glob(pattern))
        assert files, pattern
        assert set(files) <= set(names), set(files) - set(names)
    assert "llm_measure/py.typed" in names
    # every module of the library (a subpackage missing from packages.find would be absent)
    modules = {
        p.relative_to(PACKAGE.parent).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= set(names), modules - set(names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "llm-measure = llm_measure.cli.main:main" in text


def test_installed_library_is_the_wheel_and_finds_its_data(fresh_venv, tmp_path):
    probe = """
import json, pathlib
import llm_measure
from llm_measure.families.gstudy.lme4 import SCRIPT
from llm_measure.inference.rubric import load_items
from llm_measure.paths import SPECS_DIR, command_name, resolve_spec_path, workspace_root
print(json.dumps({
    "module": llm_measure.__file__,
    "specs": sorted(p.name for p in SPECS_DIR.glob("*.toml")),
    "r_script": SCRIPT.is_file(),
    "rubric_item": load_items(["CLPC"])[0].name,
    "workspace": str(workspace_root()),
    "command": command_name("report"),
    "docs_spec": str(resolve_spec_path("models/gstudy_teacher_lesson_rater.toml")),
}))
"""
    found = json.loads(_ok(_run([fresh_venv / "python", "-c", probe], cwd=tmp_path)))
    venv = fresh_venv.parent.resolve()
    assert Path(found["module"]).resolve().is_relative_to(venv), found["module"]
    assert found["specs"] == sorted(p.name for p in (PACKAGE / "specs").glob("*.toml"))
    assert found["r_script"]
    assert found["rubric_item"] == "Positive climate"
    # outside a source checkout, default outputs go under the current folder
    assert Path(found["workspace"]).resolve() == tmp_path.resolve()
    assert found["command"] == "llm-measure report"
    # the docs' spelling models/<name>.toml finds the spec shipped in the package
    assert Path(found["docs_spec"]).resolve().is_relative_to(venv), found["docs_spec"]


def test_console_command_fits_and_reports_the_embedded_default(fresh_venv, tmp_path):
    command = fresh_venv / "llm-measure"
    # few draws: this tests the package, not the sampler; without --strict a failed
    # diagnostics gate is reported (in the output and diagnostics.txt) and the exit code is 0
    fit = _ok(
        _run(
            [command, "fit", "--draws", "100", "--tune", "100", "--chains", "2",
             "--no-progress"],
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert "Diagnostics gate:" in fit
    out = tmp_path / "fits" / "embedded_default"
    for name in ("posterior.nc", "summary.csv", "report.md", "diagnostics.txt", "spec.toml"):
        assert (out / name).is_file(), name
    _ok(_run([command, "report", out], cwd=tmp_path))
    assert (out / "report" / "report.html").is_file()
    # nothing was written outside the current folder's fits/
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits"]


def test_console_command_simulates(fresh_venv, tmp_path):
    _ok(_run([fresh_venv / "llm-measure", "simulate", "--out", "x"], cwd=tmp_path))
    assert {"ratings.csv", "outcome.csv", "truth.json"} <= {
        p.name for p in (tmp_path / "x").iterdir()
    }


def test_python_dash_m_and_bad_commands(fresh_venv, tmp_path):
    usage = _ok(_run([fresh_venv / "python", "-m", "llm_measure", "--help"], cwd=tmp_path))
    assert "llm-measure {fit,infer,simulate,report}" in usage
    bad = _run([fresh_venv / "llm-measure", "fitt"], cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command 'fitt'" in bad.stderr
