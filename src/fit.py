"""`python -m src.fit` from the repository root: the ``llm-measure fit`` command
(:mod:`llm_measure.cli.fit`)."""

import sys

from llm_measure.cli.fit import main

if __name__ == "__main__":
    sys.exit(main())
