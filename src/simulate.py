"""`python -m src.simulate` from the repository root: the ``llm-measure simulate`` command
(:mod:`llm_measure.cli.simulate`)."""

import sys

from llm_measure.cli.simulate import main

if __name__ == "__main__":
    sys.exit(main())
