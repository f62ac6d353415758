"""llm-measure. Run as ``python -m src.fit`` (report, simulate), Ctrl-C and SIGTERM are
recorded from the first moment, before PyMC's seconds of importing (see src/errors.py)."""

import sys

from src.errors import record_signals_while_importing

record_signals_while_importing(sys.orig_argv)
