"""``python -m llm_measure COMMAND [arguments]``: the ``llm-measure`` console command."""

import sys

from llm_measure.cli.main import main

sys.exit(main())
