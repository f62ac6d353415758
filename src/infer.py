"""`python -m src.infer` from the repository root: the ``llm-measure infer`` command
(:mod:`llm_measure.cli.infer`)."""

import sys

from llm_measure.cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
