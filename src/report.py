"""`python -m src.report` from the repository root: the ``llm-measure report`` command
(:mod:`llm_measure.cli.report`)."""

import sys

from llm_measure.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
