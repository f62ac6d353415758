"""The repository's command shims: ``python -m src.fit`` (infer, simulate, report) runs the
commands of the ``llm_measure`` package (``src/llm_measure``) from the repository root,
installed or not. The wheel installs only ``llm_measure``; this folder is not part of it.

Ctrl-C and SIGTERM are recorded from the first moment, before PyMC's seconds of importing
(see src/llm_measure/errors.py)."""

import sys
from pathlib import Path

# a fresh checkout without `pip install -e .` still finds the package beside this folder
_PACKAGE_ROOT = str(Path(__file__).resolve().parent)
if _PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, _PACKAGE_ROOT)

from llm_measure.errors import record_signals_while_importing  # noqa: E402

record_signals_while_importing(sys.orig_argv)
