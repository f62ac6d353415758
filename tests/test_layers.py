"""The library's imports run one way and hold no cycles (issue 14, item 1).

The layers and the no-cycles rule are import-linter contracts in pyproject.toml
(``[tool.importlinter]``); this test runs them on this checkout's ``src/llm_measure`` and prints
the offending import chains. The family folders' independence is checked here with grimp
(import-linter's graph), since it must hold for any family folder without listing them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "src" / "llm_measure" / "families"


def test_import_linter_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's llm_measure
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"],  # reads [tool.importlinter] of ROOT/pyproject.toml
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = result.stdout[result.stdout.find("Contracts") :]
    assert result.returncode == 0, f"import contracts broken:\n{report}\n{result.stderr}"


def test_family_folders_do_not_import_each_other():
    """Every folder of families/ holding a family.py is a family: no import chain joins two
    of them, and the shared parts (base, common, spec) import none directly (the registry,
    which maps names to families, may)."""
    sys.path.insert(0, str(ROOT / "src"))
    graph = grimp.build_graph("llm_measure", cache_dir=None)
    folders = sorted(f"llm_measure.families.{p.parent.name}" for p in FAMILIES.glob("*/family.py"))
    assert len(folders) >= 2, folders
    problems = []
    for a, b in itertools.permutations(folders, 2):
        chain = graph.find_shortest_chain(importer=a, imported=b, as_packages=True)
        if chain:
            problems.append(" -> ".join(chain))
    shared = [
        m
        for m in graph.find_children("llm_measure.families")
        if m not in folders and m != "llm_measure.families.registry"
    ]
    for module, folder in itertools.product(shared, folders):
        modules = {module} | graph.find_descendants(module)
        targets = {folder} | graph.find_descendants(folder)
        for importer, imported in itertools.product(sorted(modules), sorted(targets)):
            if graph.direct_import_exists(importer=importer, imported=imported):
                problems.append(f"{importer} -> {imported}")
    assert not problems, "family folders are not independent:\n" + "\n".join(problems)
